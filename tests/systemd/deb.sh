#!/usr/bin/env bash
# The Debian packages under a real systemd: builds a throw-away root (a copy
# of this host's /etc and dpkg database, its /usr behind a writable overlay
# that is thrown away), boots it with systemd-nspawn (--private-network:
# loopback only) and runs tests/systemd/deb-inner.sh as its only job. That
# script installs the .debs with dpkg, checks the units are enabled but not
# started, enrolls a connector and a tunneler, passes a request through, then
# purges the packages; this script then lists whatever they left under
# /etc/ztr, /var/lib and /usr, and fails on anything they owned.
#
#   tests/systemd/deb.sh DEBS [BUILD]   DEBS: the .debs (make deb: build/deb);
#                                        BUILD: a tree with tests/tools/tcp_peer
# Results go to $ZTR_DEB_RESULTS (default DEBS/test): checks.txt, inner.log,
# left.txt, journal.txt. Prints "deb: N passed, M failed"; exits 0 when every
# check passed or when it cannot run here ("skipped: <reason>"), 1 otherwise.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEBS="$(cd "${1:?DEBS directory}" 2>/dev/null && pwd)" || { echo "deb-test: no directory ${1}" >&2; exit 1; }
BUILD="${2:-build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
RESULTS="${ZTR_DEB_RESULTS:-$DEBS/test}"
BOOT_TIMEOUT="${ZTR_SYSTEMD_TIMEOUT:-240}"

skip() { echo "deb-test: skipped: $1"; echo "deb: 0 passed, 0 failed (skipped: $1)"; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root (systemd-nspawn needs root)"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"
[ -x /lib/systemd/systemd ] || skip "no systemd on this host to boot in a container"
grep -qw overlay /proc/filesystems || skip "no overlayfs for the throw-away /usr"
ls "$DEBS"/ztr-{common,controller,connector,tunneler}_*.deb >/dev/null 2>&1 ||
  { echo "deb-test: no ztr-*.deb in $DEBS: make deb" >&2; exit 1; }
[ -x "$BUILD/tests/tools/tcp_peer" ] || { echo "deb-test: $BUILD/tests/tools/tcp_peer is missing: build first" >&2; exit 1; }

rm -rf "$RESULTS"
mkdir -p "$RESULTS/debs" "$RESULTS/usr-upper"
cp "$DEBS"/ztr-{common,controller,connector,tunneler}_*.deb "$RESULTS/debs/"
cp "$DEBS"/ztr-console_*.deb "$RESULTS/debs/" 2>/dev/null   # when make deb built it
# The throw-away root: what dpkg and systemd write outside /usr lands here.
TROOT="$RESULTS/root"
mkdir -p "$TROOT"/{usr,var/lib,var/log,var/tmp,var/cache,tmp,proc,sys,dev,run,root}
for l in bin lib lib64 lib32 sbin; do [ -e "/$l" ] && ln -s "usr/$l" "$TROOT/$l"; done
cp -a /etc "$TROOT/etc"
cp --remove-destination /usr/lib/os-release "$TROOT/etc/os-release"   # nspawn checks it before /usr is there
cp -a /var/lib/dpkg "$TROOT/var/lib/dpkg"
rm -rf "$TROOT/etc/ztr" "$TROOT"/etc/systemd/system/ztr-*

RUNNER=ztr-deb-test.service
cat >"$RESULTS/$RUNNER" <<UNIT
[Unit]
Description=ztr package test (tests/systemd/deb-inner.sh)
Wants=basic.target
After=basic.target
FailureAction=poweroff-force

[Service]
Type=oneshot
Environment=ZTR_TEST_SRC=/ztr-test/src ZTR_TEST_BUILD=/ztr-test/build ZTR_TEST_RESULTS=/ztr-test/results
ExecStart=/bin/bash /ztr-test/src/tests/systemd/deb-inner.sh
TimeoutStartSec=$((BOOT_TIMEOUT - 30))s
UNIT

echo "deb-test: booting a throw-away root in systemd-nspawn (results: $RESULTS)"
start=$(date +%s)
timeout -k 15 "$BOOT_TIMEOUT" systemd-nspawn -q -D "$TROOT" --register=no --keep-unit --private-network \
  --overlay=/usr:"$RESULTS/usr-upper":/usr \
  --bind-ro="$ROOT":/ztr-test/src --bind-ro="$BUILD":/ztr-test/build \
  --bind="$RESULTS":/ztr-test/results --bind-ro="$RESULTS/$RUNNER":/etc/systemd/system/$RUNNER \
  -b systemd.unit=$RUNNER systemd.firstboot=off \
  systemd.mask=systemd-networkd-wait-online.service >"$RESULTS/nspawn.log" 2>&1
nspawn_status=$?
echo "deb-test: container ran $(($(date +%s) - start))s (nspawn exit $nspawn_status)"
if [ ! -f "$RESULTS/started" ]; then
  tail -5 "$RESULTS/nspawn.log" | sed 's/^/  nspawn: /'
  skip "systemd-nspawn could not boot the throw-away root (exit $nspawn_status; $RESULTS/nspawn.log)"
fi
touch "$RESULTS/checks.txt"
[ -f "$RESULTS/done" ] || echo "FAIL|deb-inner.sh finished (see $RESULTS/inner.log)" >>"$RESULTS/checks.txt"

# ---- what the purge left, seen from outside ---------------------------------------
# /usr: the overlay's upper layer holds every change; an entry there that is
# not a whiteout (a 0:0 character device) and not in the host's /usr was
# added and not removed.
{
  (cd "$RESULTS/usr-upper" && find . -mindepth 1 ! -type c) | while read -r p; do
    [ -e "/usr/${p#./}" ] || [ -L "/usr/${p#./}" ] || echo "/usr/${p#./}"
  done
  find "$TROOT/etc/ztr" "$TROOT"/var/lib/ztr-* "$TROOT"/var/lib/private/ztr-* \
    "$TROOT"/etc/systemd/system/*.wants/ztr-* 2>/dev/null | sed "s|^$TROOT||"
  find "$TROOT/var/lib/systemd/deb-systemd-helper-enabled" -name '*ztr*' 2>/dev/null | sed "s|^$TROOT||"
} | sort -u >"$RESULTS/left.txt"
# The operator's own file (the controller's CA, written by the test) may stay;
# anything else the packages installed, enabled or wrote may not.
owned="$(grep -vxF /etc/ztr/controller-ca.pem "$RESULTS/left.txt" | grep -vxF /etc/ztr || true)"
if [ -z "$owned" ]; then
  echo "PASS|purge left nothing the packages owned under /etc/ztr, /var/lib, /usr (left: $(tr '\n' ' ' <"$RESULTS/left.txt"))" >>"$RESULTS/checks.txt"
else
  echo "FAIL|purge left files behind|$(tr '\n' ' ' <<<"$owned")" >>"$RESULTS/checks.txt"
fi
rm -rf "$TROOT" "$RESULTS/usr-upper"

while IFS='|' read -r verdict what detail; do
  if [ "$verdict" = PASS ]; then echo "  ok    $what"; else echo "  FAIL  $what${detail:+: $detail}"; fi
done <"$RESULTS/checks.txt"
passed=$(grep -c '^PASS|' "$RESULTS/checks.txt")
failed=$(grep -c '^FAIL|' "$RESULTS/checks.txt")
echo "deb: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "--- last lines of $RESULTS/inner.log:" >&2
  tail -20 "$RESULTS/inner.log" >&2
  exit 1
fi
