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

# ---- daemons ----------------------------------------------------------------
# Background processes started here are stopped when the script exits.
E2E_PIDS=()
trap 'for p in "${E2E_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$E2E_TMP"' EXIT

# wait_for_line FILE PATTERN [SECONDS]: waits until FILE has a line with PATTERN.
wait_for_line() {
  local file="$1" pattern="$2" limit="${3:-20}" i
  for ((i = 0; i < limit * 20; i++)); do
    grep -qF -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# log_value FILE KEY: the value of KEY=... on the last "controller started" line.
log_value() {
  grep -F 'msg="controller started"' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

E2E_ADMIN_TOKEN="e2e-admin-token-0123456789abcdef"

# start_controller NAME [VAR=value ...]: runs build/bin/controller with a
# state dir under $E2E_TMP/NAME, loopback ports chosen by the kernel, a short
# heartbeat; sets CTL_ADDR, ADMIN_URL, HEALTH_URL, CTL_PID, CTL_LOG, CTL_STATE.
start_controller() {
  local name="$1"; shift
  CTL_STATE="$E2E_TMP/$name"
  E2E_STARTS=$((${E2E_STARTS:-0} + 1))
  CTL_LOG="$E2E_TMP/$name.$E2E_STARTS.log"   # one log per start: ports differ
  mkdir -p "$CTL_STATE"
  env TRUST_DOMAIN=example.org STATE_DIR="$CTL_STATE" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 HEARTBEAT_INTERVAL=300ms \
    ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" "$@" "$ZTR_TEST_BIN/controller" >>"$CTL_LOG" 2>&1 &
  CTL_PID=$!
  E2E_PIDS+=("$CTL_PID")
  if ! wait_for_line "$CTL_LOG" 'msg="controller started"' 20; then
    echo "controller did not start:" >&2; tail -5 "$CTL_LOG" >&2; return 1
  fi
  CTL_ADDR="127.0.0.1:$(log_value "$CTL_LOG" control_port)"
  ADMIN_URL="http://127.0.0.1:$(log_value "$CTL_LOG" admin_port)"
  HEALTH_URL="http://127.0.0.1:$(log_value "$CTL_LOG" health_port)"
  export ADMIN_URL ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN"
}

# stop_controller: SIGTERM and wait; sets STOP_STATUS.
stop_controller() {
  kill -TERM "$CTL_PID" 2>/dev/null
  wait "$CTL_PID"
  STOP_STATUS=$?
}

ctl() { "$ZTR_TEST_BIN/controller" "$@"; }
probe() { "$ZTR_TEST_BIN/../tests/tools/ctl_probe" "$@"; }
