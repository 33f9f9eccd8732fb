#!/usr/bin/env bash
# The certificate expires while the controller is down and the agent still
# holds its token: re-enrollment attempts back off like reconnects (they
# used to spin, thousands a second), and once the controller is back the
# agent re-enrolls with the retained token and is ONLINE again.
. "$(dirname "$0")/lib.sh"
start_controller ctl SVID_TTL=10s || exit 1
tok="$(ctl token create --role tunneler --name roamer --uses 3)"
start_agent tunneler roamer ENROLLMENT_TOKEN="$tok" RECONNECT_MIN_DELAY=100ms \
  RECONNECT_MAX_DELAY=500ms
check "agent starts" $?
wait_for_state ONLINE 10; check "ONLINE" $?
not_after=$(json_value not_after)
stop_controller
sleep $((not_after - $(date +%s) + 3))
kill -0 "$AGENT_PID"; check "the agent keeps running after its certificate expired" $?
attempts=$(count_lines "$AGENT_LOG" 're-enrolling with the retained token')
[ "$attempts" -ge 1 ] && [ "$attempts" -le 30 ]
check "re-enrollment attempts back off ($attempts in ~3 s, not thousands)" $?
health; expired=$(json_value telemetry.auth.expired)
[ "${expired:-0}" -le 40 ]; check "telemetry.auth.expired stays small ($expired)" $?
grep -qF 'msg="reconnect scheduled"' "$AGENT_LOG"; check "attempts are scheduled with backoff" $?
start_controller ctl SVID_TTL=10s CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_state ONLINE 15; check "ONLINE again once the controller is back (re-enrolled)" $?
grep -qF 'msg="enrolled"' <(tail -n 50 "$AGENT_LOG"); check "it re-enrolled with the retained token" $?
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "clean stop" $?
finish
