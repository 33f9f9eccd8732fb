#!/usr/bin/env bash
# make test's runner: layering, the docs against the schema (and the man
# pages' lint), unit, e2e, hostile, faults (tests/faults: crashes, full and
# failing disks), the failure modes (with the systemd units under a real
# systemd), the web console (unit + browser), the Debian packages (built,
# installed and purged under systemd), fuzz smoke against one build tree, then one closing
# line with the totals.
set -uo pipefail
BUILD="${1:?build tree}"
FUZZ_BUILD="${2:?fuzz build tree}"
FUZZ_SECONDS="${3:-30}"
shift 3
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
bash "$ROOT/tests/layering.sh" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/docs_check.sh" "$BUILD" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/run-unit.sh" "$BUILD" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/run-e2e.sh" "$BUILD" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/run-e2e.sh" "$BUILD" hostile 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/run-e2e.sh" "$BUILD" faults 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/run-failure-modes.sh" "$BUILD" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
bash "$ROOT/tests/run-ui.sh" "$BUILD" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# The Debian packages: built (lintian-checked), then installed, run and purged
# in a throw-away root under systemd (tests/systemd/deb.sh).
if bash "$ROOT/scripts/deb.sh" "$ROOT/build/deb" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
  bash "$ROOT/tests/systemd/deb.sh" "$ROOT/build/deb" "$BUILD" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
else
  echo "deb: 0 passed, 1 failed (make deb)" | tee -a "$out"; status=1
fi
# The units under systemd ran once for the 5.x modes above; their own checks count too.
systemd_out="$ROOT/$BUILD/systemd-test/run.out"
if grep -qE '^systemd: [0-9]+ passed, [0-9]+ failed$' "$systemd_out" 2>/dev/null; then
  grep -E '^systemd: ' "$systemd_out" | tail -1 | tee -a "$out"
  grep -qE '^systemd: [0-9]+ passed, 0 failed$' "$systemd_out" || status=1
else
  echo "systemd: not run ($(grep -m1 -i 'skipped' "$systemd_out" 2>/dev/null || echo "no results in $systemd_out"))"
fi
bash "$ROOT/tests/run-fuzz.sh" "$FUZZ_BUILD" "$FUZZ_SECONDS" "$@" 2>&1 | tee -a "$out"; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
total_passed=0; total_failed=0
while read -r _ p _ f _; do
  total_passed=$((total_passed + p)); total_failed=$((total_failed + f))
done < <(grep -E '^(layering|docs|deb|unit|e2e|hostile|faults|fuzz|systemd|ui|failure modes): [0-9]+ passed, [0-9]+ failed' "$out" |
  sed 's/^failure modes:/failure-modes:/')
[ "$status" -eq 0 ] || [ "$total_failed" -gt 0 ] || total_failed=1
echo "all: $total_passed passed, $total_failed failed"
exit "$status"
