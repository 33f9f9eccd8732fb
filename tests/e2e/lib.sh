# shellcheck shell=bash
# Helpers for e2e scripts: each script sources this, runs the real binaries
# from $ZTR_TEST_BIN and calls pass/fail through these assertions.
set -uo pipefail
: "${ZTR_TEST_BIN:?ZTR_TEST_BIN must point at build/<tree>/bin}"
E2E_TMP="$(mktemp -d)"
trap 'rm -rf "$E2E_TMP"' EXIT
E2E_FAILURES=0
E2E_CHECKS=0

# run CMD...: captures stdout, stderr and the exit status of one command.
run() {
  "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
  RUN_STATUS=$?
  RUN_OUT="$(cat "$E2E_TMP/out")"
  RUN_ERR="$(cat "$E2E_TMP/err")"
}

check() { # check DESCRIPTION CONDITION-RESULT(0/1)
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$2" -ne 0 ]; then
    E2E_FAILURES=$((E2E_FAILURES + 1))
    echo "  FAIL: $1" >&2
    echo "    status=$RUN_STATUS stdout=[$RUN_OUT] stderr=[$RUN_ERR]" >&2
  fi
}

expect_status() { [ "$RUN_STATUS" -eq "$1" ]; check "$2 (exit $1)" $?; }
expect_out() { [ "$RUN_OUT" = "$1" ]; check "$2 (stdout = $1)" $?; }
expect_out_has() { grep -qF -- "$1" <<<"$RUN_OUT"; check "$2 (stdout has: $1)" $?; }
expect_err() { [ "$RUN_ERR" = "$1" ]; check "$2 (stderr = $1)" $?; }
expect_err_has() { grep -qF -- "$1" <<<"$RUN_ERR"; check "$2 (stderr has: $1)" $?; }
expect_file_mode() {
  local mode; mode="$(stat -c %a "$1" 2>/dev/null)"
  [ "$mode" = "$2" ]; check "$3 ($1 mode $2, got ${mode:-none})" $?
}

finish() {
  echo "  $E2E_CHECKS checks, $E2E_FAILURES failed"
  [ "$E2E_FAILURES" -eq 0 ]
}
