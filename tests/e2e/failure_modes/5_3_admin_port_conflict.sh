#!/usr/bin/env bash
# Failure mode 5.3: the admin HTTP port is already taken (by another
# program, or by a second controller). The controller logs
# `listen 127.0.0.1:PORT: bind: address already in use` and exits 1; the
# controller that holds the port is unaffected.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 5.3 "Admin HTTP Port Conflict" "bind: address already in use"
T="$E2E_TMP"
base=(TRUST_DOMAIN=example.org CONTROLLER_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0
      ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN")

# Another program holds the port.
start_peer echo || exit 1; TAKEN=$PEER_PORT
run timeout 20 env "${base[@]}" STATE_DIR="$T/s1" ADMIN_LISTEN="127.0.0.1:$TAKEN" "$ZTR_TEST_BIN/controller"
printf '%s\n' "$RUN_ERR" >"$T/c1.log"
fm_seen "$T/c1.log"
expect_status 1 "admin API cannot bind: the controller exits non-zero"
expect_err_has "msg=\"controller failed to start\" error=\"listen 127.0.0.1:$TAKEN: bind: address already in use\"" \
  "one error line names the address"
! grep -qF 'msg="controller started"' "$T/c1.log"; check "it never reports started" $?
! grep -qF 'admin API listening' "$T/c1.log"; check "no admin API" $?

# A second controller on a running controller's admin port.
start_controller ctl || exit 1
admin_port=${ADMIN_URL##*:}
run timeout 20 env "${base[@]}" STATE_DIR="$T/s2" ADMIN_LISTEN="127.0.0.1:$admin_port" "$ZTR_TEST_BIN/controller"
expect_status 1 "second controller on the same admin port exits non-zero"
expect_err_has "listen 127.0.0.1:$admin_port: bind: address already in use" "second controller symptom"
run ctl node list
expect_status 0 "the first controller's admin API still answers"
run curl -s "$HEALTH_URL/health"
expect_out_has '"status":"ok"' "the first controller is healthy"
kill -0 "$CTL_PID"; check "the first controller is still running" $?

# The health/metrics port and the control port: the same text, same exit.
run timeout 20 env "${base[@]}" STATE_DIR="$T/s3" ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN="127.0.0.1:$TAKEN" "$ZTR_TEST_BIN/controller"
expect_status 1 "health port taken: exit non-zero"
expect_err_has "listen 127.0.0.1:$TAKEN: bind: address already in use" "health port symptom"
run timeout 20 env "${base[@]}" STATE_DIR="$T/s4" ADMIN_LISTEN=127.0.0.1:0 CONTROLLER_LISTEN="127.0.0.1:$TAKEN" "$ZTR_TEST_BIN/controller"
expect_status 1 "control port taken: exit non-zero"
expect_err_has "listen 127.0.0.1:$TAKEN: bind: address already in use" "control port symptom"
stop_controller
fm_trim
fm_finish
