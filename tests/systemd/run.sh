#!/usr/bin/env bash
# The systemd units under a real systemd: boots a throw-away container of this
# host's own root with systemd-nspawn (--volatile=yes: a tmpfs root with the
# host's /usr read-only; --private-network: loopback only), installs what
# `make install DESTDIR=...` staged, and runs tests/systemd/inner.sh as the
# container's only job (a oneshot unit). That script checks the three daemons'
# units (controller, connector, tunneler) and the console's (ztr-ui) end to
# end, reproduces failure modes 5.1 and 5.2 (and 6.2 under systemd), measures
# `systemd-analyze security`, writes everything to a bind-mounted results
# directory and powers the container off.
#
#   tests/systemd/run.sh [BUILD]      BUILD: build tree (default build)
#
# Results go to $ZTR_SYSTEMD_RESULTS (default BUILD/systemd-test): checks.txt
# (PASS|FAIL lines), security-<unit>.txt, 5_1.* and 5_2.* (journal excerpts
# and unit states), ui-* (the console), journal.txt, inner.log, and `finished`
# once a boot ran to its end (the failure-mode scripts reuse it:
# tests/systemd/results.sh).
# Exit status: 0 when every check passed, or when the test cannot run here
# (not root, no systemd, no systemd-nspawn, the container does not boot):
# then it prints "skipped: <reason>" and writes the reason to RESULTS/skipped.
# 1 otherwise.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BUILD="$(cd "$BUILD" 2>/dev/null && pwd)" || { echo "systemd-test: no build tree ${1:-build}" >&2; exit 1; }
RESULTS="${ZTR_SYSTEMD_RESULTS:-$BUILD/systemd-test}"
BOOT_TIMEOUT="${ZTR_SYSTEMD_TIMEOUT:-240}"

skip() {
  [ -d "$RESULTS" ] && echo "$1" >"$RESULTS/skipped" 2>/dev/null
  echo "systemd-test: skipped: $1"
  exit 0
}
[ "$(id -u)" = 0 ] || skip "not root (systemd-nspawn needs root)"
mkdir -p "$RESULTS" || exit 1
RESULTS="$(cd "$RESULTS" && pwd)"
# Only what this script and inner.sh write (the directory may be the caller's).
rm -rf "$RESULTS/stage"
rm -f "$RESULTS"/{checks.txt,started,done,finished,complete,skipped,ztr-systemd-test.service} \
  "$RESULTS"/*.log "$RESULTS"/*.journal "$RESULTS"/*.result "$RESULTS"/*.err "$RESULTS"/show-*.txt \
  "$RESULTS"/security-*.txt "$RESULTS"/journal.txt "$RESULTS"/node-list.txt "$RESULTS"/ui-*

# ---- can it run here? -------------------------------------------------------------
[ -x /lib/systemd/systemd ] || [ -x /usr/lib/systemd/systemd ] ||
  skip "no systemd on this host (/lib/systemd/systemd) to boot in a container"
[ -d /sys/fs/cgroup ] || skip "no /sys/fs/cgroup"
if ! command -v systemd-nspawn >/dev/null; then
  # scripts/deps.sh lists it; install it here too so the test runs on its own.
  if command -v apt-get >/dev/null; then
    echo "systemd-test: installing systemd-container"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends systemd-container; } >"$RESULTS/apt.log" 2>&1
  fi
  command -v systemd-nspawn >/dev/null ||
    skip "systemd-nspawn is missing and systemd-container could not be installed (see $RESULTS/apt.log)"
fi
command -v curl >/dev/null || skip "curl is missing (scripts/deps.sh installs it)"

for f in bin/controller bin/connector bin/tunneler bin/ztr-pki tests/tools/tcp_peer; do
  [ -x "$BUILD/$f" ] || { echo "systemd-test: $BUILD/$f is missing: build first (make)" >&2; exit 1; }
done
# ztr-ui.service runs Debian's nodejs; the container's /usr is this host's.
[ -x /usr/bin/node ] ||
  { echo "systemd-test: /usr/bin/node is missing: ztr-ui.service runs it (apt-get install nodejs)" >&2; exit 1; }

# ---- stage `make install` ------------------------------------------------------------
# -o: install exactly the binaries of BUILD, never rebuild them here (an ASan
# tree is built with other flags than this make call would use).
STAGE="$RESULTS/stage"
BUILD_ARG="$BUILD"
case "$BUILD" in "$ROOT"/*) BUILD_ARG="${BUILD#"$ROOT"/}" ;; esac
if ! make -C "$ROOT" --no-print-directory install BUILD="$BUILD_ARG" DESTDIR="$STAGE" PREFIX=/usr/local \
    -o "$BUILD_ARG/bin/controller" -o "$BUILD_ARG/bin/connector" -o "$BUILD_ARG/bin/tunneler" \
    -o "$BUILD_ARG/bin/ztr-pki" >"$RESULTS/install.log" 2>&1; then
  cat "$RESULTS/install.log" >&2
  echo "systemd-test: make install DESTDIR=$STAGE failed" >&2
  exit 1
fi

# The YAML examples parse (schema and types) with the binaries of BUILD.
for b in controller connector tunneler; do
  if "$BUILD/bin/$b" --config "$ROOT/conf/$b.yaml.example" --help >/dev/null 2>"$RESULTS/yaml-$b.err"; then
    echo "PASS|conf/$b.yaml.example parses ($b --config ... --help)" >>"$RESULTS/checks.txt"
  else
    echo "FAIL|conf/$b.yaml.example parses|$(head -1 "$RESULTS/yaml-$b.err")" >>"$RESULTS/checks.txt"
  fi
done

# A sanitizer build: LeakSanitizer needs ptrace, which SystemCallFilter= of
# the units refuses (leaks are checked by the e2e tests, outside systemd).
SANITIZED=0
if ldd "$BUILD/bin/controller" 2>/dev/null | grep -q libasan ||
    grep -q __asan_init "$BUILD/bin/controller" 2>/dev/null; then
  SANITIZED=1
fi

# ---- the runner unit and the boot ----------------------------------------------
# Masked: systemd-networkd-wait-online, which would hold network-online.target
# (and so the units' start) for 2 minutes in a container with loopback only.
RUNNER=ztr-systemd-test.service
cat >"$RESULTS/$RUNNER" <<EOF
[Unit]
Description=ztr systemd test runner (tests/systemd/inner.sh)
Wants=basic.target
# After= only keeps the ztr units referenced, so systemd does not unload one
# once it is stopped: its ExecMainStatus= stays readable.
After=basic.target ztr-controller.service ztr-connector.service ztr-tunneler.service ztr-ui.service
FailureAction=poweroff-force

[Service]
Type=oneshot
Environment=ZTR_TEST_SRC=/ztr-test/src ZTR_TEST_BUILD=/ztr-test/build ZTR_TEST_STAGE=/ztr-test/results/stage ZTR_TEST_RESULTS=/ztr-test/results
Environment=ZTR_TEST_SANITIZED=$SANITIZED
ExecStart=/bin/bash /ztr-test/src/tests/systemd/inner.sh
TimeoutStartSec=$((BOOT_TIMEOUT - 30))s
StandardOutput=journal+console
StandardError=journal+console
EOF

echo "systemd-test: booting $(systemctl --version 2>/dev/null | head -1 || echo systemd) in systemd-nspawn (results: $RESULTS)"
start=$(date +%s)
timeout -k 15 "$BOOT_TIMEOUT" systemd-nspawn -q -D / --volatile=yes --register=no --keep-unit \
  --private-network --tmpfs=/usr/local \
  --bind-ro="$ROOT":/ztr-test/src --bind-ro="$BUILD":/ztr-test/build \
  --bind="$RESULTS":/ztr-test/results \
  --bind-ro="$RESULTS/$RUNNER":/etc/systemd/system/$RUNNER \
  -b systemd.unit=$RUNNER systemd.firstboot=off \
  systemd.mask=systemd-networkd-wait-online.service >"$RESULTS/nspawn.log" 2>&1
nspawn_status=$?
elapsed=$(($(date +%s) - start))

if [ ! -f "$RESULTS/started" ]; then
  # The runner never ran: the container did not boot, which says nothing
  # about ztr. Say why, loudly.
  tail -5 "$RESULTS/nspawn.log" | sed 's/^/  nspawn: /'
  skip "systemd-nspawn could not boot this host's root (exit $nspawn_status; $RESULTS/nspawn.log)"
fi

# ---- report ------------------------------------------------------------------------
echo "systemd-test: container ran ${elapsed}s (nspawn exit $nspawn_status)"
[ -f "$RESULTS/done" ] || echo "FAIL|inner.sh finished (see $RESULTS/inner.log)" >>"$RESULTS/checks.txt"
[ "$nspawn_status" -eq 0 ] || echo "FAIL|container powered off by itself (nspawn exit $nspawn_status)" >>"$RESULTS/checks.txt"
while IFS='|' read -r verdict what detail; do
  if [ "$verdict" = PASS ]; then echo "  ok    $what"; else echo "  FAIL  $what${detail:+: $detail}"; fi
done <"$RESULTS/checks.txt"
echo "exposure (systemd-analyze security):"
for unit in ztr-controller ztr-connector ztr-tunneler ztr-ui; do
  line="$(grep -a 'Overall exposure level' "$RESULTS/security-$unit.txt" 2>/dev/null | sed 's/^→ *//')"
  echo "  ${line:-$unit: not measured}"
done
touch "$RESULTS/finished"   # tests/systemd/results.sh: these results are whole
passed=$(grep -c '^PASS|' "$RESULTS/checks.txt")
failed=$(grep -c '^FAIL|' "$RESULTS/checks.txt")
echo "systemd: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "--- last lines of $RESULTS/inner.log:" >&2
  tail -20 "$RESULTS/inner.log" >&2
  exit 1
fi
touch "$RESULTS/complete"
exit 0
