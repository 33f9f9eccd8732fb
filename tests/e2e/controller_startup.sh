#!/usr/bin/env bash
# The controller's start-up contract: required settings, CA checks with the
# failure-modes texts, port conflicts, state that survives a restart,
# SIGHUP survived, a clean SIGTERM.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
C="$ZTR_TEST_BIN/controller"
base=(TRUST_DOMAIN=example.org STATE_DIR="$T/s" CONTROLLER_LISTEN=127.0.0.1:0
      ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0)

run env -u ADMIN_AUTH_TOKEN "${base[@]}" "$C"
expect_status 2 "no ADMIN_AUTH_TOKEN"
expect_err_has "ADMIN_AUTH_TOKEN is required" "refuses to start without the admin token"
run env "${base[@]}" ADMIN_AUTH_TOKEN=tiny-tok "$C"
expect_status 2 "short ADMIN_AUTH_TOKEN"
expect_err_has "too short" "names the problem"
[[ "$RUN_ERR" != *"tiny-tok"* ]]; check "the token value is not logged" $?

run env "${base[@]}" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" TRUST_DOMAIN=example.org. "$C"
expect_status 2 "TRUST_DOMAIN with a trailing dot (failure-modes 1.4)"
expect_err_has 'cannot parse URI \"spiffe://example.org.\": invalid domain' "1.4 symptom (quotes escaped in the log value)"
run env "${base[@]}" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" HEARTBEAT_INTERVAL=10 "$C"
expect_status 2 "bad duration"
expect_err_has "env: HEARTBEAT_INTERVAL: invalid duration" "config error names key and origin"

run env "${base[@]}" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" SESSIONS_MAX=5 "$C"
expect_status 2 "SESSIONS_MAX out of range"
expect_err_has "SESSIONS_MAX: must be between 100 and 500000" "names the key and its range"
# Each session is a descriptor: a soft limit below SESSIONS_MAX is raised
# up to the hard one, and a hard one below it is said at start.
run bash -c 'ulimit -Sn 300 && exec timeout --preserve-status -s TERM 3 "$@"' _ env "${base[@]}" \
  ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" STATE_DIR="$T/fd1" SESSIONS_MAX=1000 "$C"
expect_status 0 "starts with a soft descriptor limit of 300 and SESSIONS_MAX=1000"
[[ "$RUN_ERR" != *"file descriptor limit below SESSIONS_MAX"* ]]
check "the soft limit was raised: no warning" $?
run bash -c 'ulimit -n 400 && exec timeout --preserve-status -s TERM 3 "$@"' _ env "${base[@]}" \
  ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" STATE_DIR="$T/fd2" SESSIONS_MAX=1000 "$C"
expect_status 0 "starts with a hard descriptor limit of 400"
expect_err_has 'msg="file descriptor limit below SESSIONS_MAX" limit=400 sessions_max=1000' "says the limit is too low, with both numbers"

# Operator CA: missing file, bad PEM, no keyCertSign (failure-modes 1.3, 1.5)
bash "$ROOT/tests/fixtures/foreign-certs.sh" "$T/f" >/dev/null
run env "${base[@]}" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" CA_CERT="$T/nope.crt" CA_KEY="$T/nope.key" "$C"
expect_status 1 "missing operator CA"
expect_err_has "failed to read controller CA: open $T/nope.crt: no such file or directory" "1.3 missing file"
printf 'not a certificate\n' > "$T/bad.crt"
run env "${base[@]}" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" CA_CERT="$T/bad.crt" CA_KEY="$T/f/goodroot.key" "$C"
expect_status 1 "bad operator CA PEM"
expect_err_has "invalid internal CA" "1.3 bad PEM"
run env "${base[@]}" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" CA_CERT="$T/f/nocertsign.crt" CA_KEY="$T/f/nocertsign.key" "$C"
expect_status 1 "operator CA without keyCertSign"
expect_err_has "CA certificate missing key usage" "1.5 symptom"

# A managed CA: created once (key 0600), kept across restarts.
start_controller main
check "controller starts" $?
expect_file_mode "$CTL_STATE/ca/ca-1.key" 600 "CA key is private"
fp1=$(sha256sum < "$CTL_STATE/ca/ca-1.crt")
run curl -s "$HEALTH_URL/health"
expect_out_has '"status":"ok"' "/health answers"
run curl -s "$HEALTH_URL/metrics"
expect_out_has "ztr_controller_sessions" "/metrics answers"
admin_port=${ADMIN_URL##*:}

# Port conflict (failure-modes 5.3): a second controller on the same admin port.
run env "${base[@]}" STATE_DIR="$T/s2" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" ADMIN_LISTEN="127.0.0.1:$admin_port" "$C"
expect_status 1 "admin port taken"
expect_err_has "bind: address already in use" "5.3 symptom"
expect_err_has "listen 127.0.0.1:$admin_port" "names the address"

# SIGHUP reloads nothing and must not kill the controller (its default
# action would): it logs, keeps serving, and still stops cleanly on SIGTERM.
kill -HUP "$CTL_PID"
wait_for_line "$CTL_LOG" 'msg="SIGHUP: nothing to reload' 10; check "SIGHUP is logged" $?
kill -0 "$CTL_PID" 2>/dev/null; check "the controller survives SIGHUP" $?
run curl -s "$HEALTH_URL/health"
expect_out_has '"status":"ok"' "/health answers after SIGHUP"
run curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes"
expect_out_has 200 "the admin API answers after SIGHUP"

stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "SIGTERM exits 0" $?
grep -qF 'msg="controller stopped"' "$CTL_LOG"; check "logs a clean stop" $?
start_controller main
fp2=$(sha256sum < "$CTL_STATE/ca/ca-1.crt")
[ "$fp1" = "$fp2" ]; check "restart keeps the CA" $?
[ ! -e "$CTL_STATE/ca/ca-2.crt" ]; check "no second CA on restart" $?
stop_controller
! grep -qF "$E2E_ADMIN_TOKEN" "$CTL_LOG"; check "admin token never logged" $?
finish
