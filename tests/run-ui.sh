#!/usr/bin/env bash
# The web console's tests: the proxy and login unit tests (node's test
# runner over ui/lib), then the browser test against the real daemons of
# one build tree (tests/ui/console.sh). Needs `make ui`. Prints
# `ui: N passed, M failed`. Usage: tests/run-ui.sh [BUILD]
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

echo "== ui browser test (tests/ui/console.sh)"
start=$(date +%s)
bash "$ROOT/tests/ui/console.sh" >"$log" 2>&1
status=$?
grep -vE '^\s*$| Killed ' "$log" | sed 's/^/  /'
read -r p f < <(sed -n 's/^  browser: \([0-9]*\) passed, \([0-9?]*\) failed$/\1 \2/p' "$log")
read -r c cf < <(sed -n 's/^  \([0-9]*\) checks, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -1)
[[ "${f:-x}" =~ ^[0-9]+$ ]] || f=1
passed=$((passed + ${p:-0} + ${c:-0} - ${cf:-0})); failed=$((failed + f + ${cf:-0}))
[ "$status" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
echo "== ui browser test: $(($(date +%s) - start)) s"
echo "ui: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
