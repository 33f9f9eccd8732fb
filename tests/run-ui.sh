#!/usr/bin/env bash
# The web console's tests: the proxy and login unit tests (node's test
# runner over ui/lib), then the browser tests against the real daemons of
# one build tree (tests/ui/console.sh, federation.sh, scale.sh). Needs
# `make ui`. Prints `ui: N passed, M failed`. Usage: tests/run-ui.sh [BUILD]
set -uo pipefail
BUILD="${1:-build}"
. "$(dirname "$0")/env.sh" "$BUILD"
ROOT="$ZTR_TEST_ROOT"
passed=0; failed=0
log="$(mktemp)"; trap 'rm -f "$log"' EXIT

echo "== ui unit tests (ui/tests/unit)"
node "$ROOT/ui/tests/run-unit.mjs" >"$log" 2>&1
grep -E '^(✔|✖)|^ui-unit:' "$log" | sed 's/^/  /'
[ "$(grep -c '^ui-unit: ' "$log")" -eq 1 ] || { tail -20 "$log"; echo "ui-unit: 0 passed, 1 failed" >>"$log"; }
read -r p f < <(sed -n 's/^ui-unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log")
passed=$((passed + p)); failed=$((failed + f))

# browser_script NAME: runs tests/ui/NAME.sh and adds its browser tests and
# shell checks to the totals.
browser_script() {
  echo "== ui browser test (tests/ui/$1.sh)"
  local start status p f c cf
  start=$(date +%s)
  bash "$ROOT/tests/ui/$1.sh" >"$log" 2>&1
  status=$?
  grep -vE '^\s*$| Killed ' "$log" | sed 's/^/  /'
  read -r p f < <(sed -n 's/^  browser: \([0-9]*\) passed, \([0-9?]*\) failed$/\1 \2/p' "$log")
  read -r c cf < <(sed -n 's/^  \([0-9]*\) checks, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -1)
  [[ "${f:-x}" =~ ^[0-9]+$ ]] || f=1
  passed=$((passed + ${p:-0} + ${c:-0} - ${cf:-0})); failed=$((failed + f + ${cf:-0}))
  [ "$status" -eq 0 ] || [ "$f" -gt 0 ] || [ "${cf:-0}" -gt 0 ] || failed=$((failed + 1))
  echo "== ui browser test $1: $(($(date +%s) - start)) s"
}
browser_script console
# Two controllers federating, each behind its own console.
browser_script federation
# 10 000 nodes enrolled for real, and the Nodes page timed in the browser.
browser_script scale
echo "ui: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
