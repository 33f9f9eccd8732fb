#!/usr/bin/env bash
# Failure mode 1.2: the controller refuses the token — already consumed,
# expired, unknown (`invalid enrollment token`), or for another role or name
# (`permission denied`). The agent exits 4 (systemd does not restart it) and
# leaves nothing in STATE_DIR; the controller records a `denied` event.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 1.2 "Invalid or Reused Token" "invalid enrollment token or permission denied"
start_controller ctl || exit 1

# refused ROLE NAME TOKEN TEXT DESCRIPTION
refused() {
  local dir="$E2E_TMP/refused-$2-$RANDOM"
  run_agent "$1" "$2" ENROLLMENT_TOKEN="$3" STATE_DIR="$dir"
  expect_status 4 "$5: enrollment fails, exit non-zero"
  expect_err_has "msg=\"$4\"" "$5: $4"
  [ ! -e "$dir/key.pem" ] && [ ! -e "$dir/cert.pem" ]
  check "$5: nothing left in STATE_DIR" $?
}

# A consumed token: the first enrollment uses it up, the second is refused.
tok=$(ctl token create --role tunneler --name laptop)
start_agent tunneler laptop ENROLLMENT_TOKEN="$tok"
wait_for_state ONLINE 10; check "the first use of the token enrolls" $?
stop_agent
refused tunneler laptop "$tok" "invalid enrollment token" "reused token"
fm_seen_also "$AGENT_LOG" "invalid enrollment token"

# An expired token.
etok=$(ctl token create --role connector --name dc1 --address 127.0.0.1 --ttl 1s)
sleep 1.2
refused connector dc1 "$etok" "invalid enrollment token" "expired token"
run ctl token list
expect_out_has "name=dc1 prefix=false uses_left=1" "the expired token is listed..."
expect_out_has "expired=true" "... as expired"

# A token that never existed (right shape, unknown id).
refused connector dc1 "0123456789abcdef.$(printf '%064d' 0)" "invalid enrollment token" "unknown token"

# A token for the other role, and one for another name: permission denied.
ptok=$(ctl token create --role connector --name dc2 --address 127.0.0.1)
refused tunneler dc2 "$ptok" "permission denied" "token for another role"
fm_seen_also "$AGENT_LOG" "permission denied"
refused connector other "$ptok" "permission denied" "token for another name"
run ctl token list
expect_out_has "name=dc2 prefix=false uses_left=1" "a refused attempt consumes nothing"

# The controller's side: refusals are events, nothing else enrolled.
run ctl events --limit 1000
[ "$(grep -c 'kind=denied' <<<"$RUN_OUT")" -ge 5 ]; check "every refusal is a denied event" $?
[ "$(grep -c 'kind=enrolled' <<<"$RUN_OUT")" -eq 1 ]; check "only the first use enrolled" $?
run curl -s "$HEALTH_URL/metrics"
grep -q '^ztr_controller_enrollment_denied_total [5-9]' <<<"$RUN_OUT"
check "ztr_controller_enrollment_denied_total counts them" $?
stop_controller
fm_trim
fm_finish
