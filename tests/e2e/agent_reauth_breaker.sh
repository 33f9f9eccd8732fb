#!/usr/bin/env bash
# The circuit breaker, as seed 004 has it: one re-authentication attempt
# per transition into REAUTHENTICATING (never one per frame or retry tick);
# 3 refused in a row settle the agent in EXPIRED for good — no further
# attempts, kept across restarts (STATE_DIR/reauth.json), a hint naming the
# command that fixes it, exit 5 when stopped (RestartPreventExitStatus);
# the count resets on a successful register. The controller refuses by
# REAUTH_GRACE=0s (an expired key no longer re-authenticates); the agent's
# retained token is spent, so its fallback is refused too.
. "$(dirname "$0")/lib.sh"
start_controller ctl SVID_TTL=6s REAUTH_GRACE=0s || exit 1
tok=$(ctl token create --role tunneler --name t1)
start_agent tunneler t1 ENROLLMENT_TOKEN="$tok" RECONNECT_MIN_DELAY=1500ms RECONNECT_MAX_DELAY=2s
wait_for_state ONLINE 10; check "enrolled, ONLINE" $?
NODE=$(json_value node_id); NOT_AFTER=$(json_value not_after)
stop_controller   # before the renewal at about half the 6 s
# On a loaded machine the renewal may have come first: expiry is what the
# agent holds now.
health; NOT_AFTER=$(json_value not_after)
HINT="controller token create --role tunneler --name t1 --replace, then set ENROLLMENT_TOKEN to it and restart the agent"
attempts() { count_lines "$AGENT_LOG" 'msg="re-authenticating"'; }
refusals() { count_lines "$AGENT_LOG" 'from=REAUTHENTICATING to=EXPIRED'; }

# ---- one refusal, then a success: the count resets ----------------------------------
wait_for_line "$AGENT_LOG" 'msg="certificate expired"' $((NOT_AFTER - $(date +%s) + 5))
check "expired while the controller is away" $?
start_controller ctl SVID_TTL=6s REAUTH_GRACE=0s CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_line "$AGENT_LOG" 'from=REAUTHENTICATING to=EXPIRED reason="re-authentication refused"' 10
check "attempt 1 refused (past REAUTH_GRACE, then the spent token)" $?
stop_controller
# Read while no controller can answer: once one listens, the agent's next
# reconnect may re-authenticate before a check here.
health
[ "$HEALTH_CODE" = 503 ] && grep -qF '"failures":1,' <<<"$HEALTH_BODY"
check "EXPIRED between attempts: /health 503, failures 1 ($(json_value state))" $?
start_controller ctl SVID_TTL=6s CONTROLLER_LISTEN="$CTL_ADDR" || exit 1   # REAUTH_GRACE 7d
wait_for_state ONLINE 10; check "attempt 2 re-authenticates" $?
grep -qF '"reauth":{"method":"none","failures":0,' <<<"$HEALTH_BODY"; check "the count reset at the register" $?
[ "$(attempts)" -eq 2 ] && [ "$(refusals)" -eq 1 ]; check "2 attempts, 1 refused ($(attempts), $(refusals))" $?

# ---- three refusals in a row: EXPIRED for good --------------------------------------
stop_controller
health; NOT_AFTER=$(json_value not_after)
while [ "$(count_lines "$AGENT_LOG" 'msg="certificate expired"')" -lt 2 ]; do
  [ "$(date +%s)" -gt $((NOT_AFTER + 5)) ] && break; sleep 0.2
done
[ "$(count_lines "$AGENT_LOG" 'msg="certificate expired"')" -eq 2 ]; check "expired a second time" $?
start_controller ctl SVID_TTL=6s REAUTH_GRACE=0s CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_line "$AGENT_LOG" 'msg="re-authentication failed; this node needs an operator"' 20
check "3 refusals settle EXPIRED" $?
[ "$(attempts)" -eq 5 ] && [ "$(refusals)" -eq 4 ]
check "exactly 3 more attempts, each one transition ($(attempts) attempts, $(refusals) + the last)" $?
grep -F 'msg="re-authentication failed; this node needs an operator"' "$AGENT_LOG" | grep -qF "attempts=3 max=3" 
check "the log says 3 of 3" $?
grep -F 'msg="re-authentication failed; this node needs an operator"' "$AGENT_LOG" | grep -qF "hint=\"$HINT\""
check "and names the command that fixes it" $?
wait_for_state EXPIRED 3
[ "$HEALTH_CODE" = 503 ] && grep -qF '"failures":3,"max":3,"terminal":true' <<<"$HEALTH_BODY"
check "/health 503 EXPIRED, terminal" $?
[ -f "$AGENT_STATE/reauth.json" ] && grep -q '"terminal": true' "$AGENT_STATE/reauth.json"
check "the verdict is on disk" $?
! grep -qE '[0-9a-f]{16}\.[0-9a-f]{64}' "$AGENT_STATE/reauth.json"; check "without the token" $?
seen=$(count_lines "$CTL_LOG" 'msg="re-authentication refused"')
kill -HUP "$AGENT_PID"; sleep 3
[ "$(attempts)" -eq 5 ] && [ "$(count_lines "$CTL_LOG" 'msg="re-authentication refused"')" -eq "$seen" ]
check "no fourth attempt, not even after SIGHUP" $?
grep -qF 'msg="SIGHUP: nothing to retry" state=EXPIRED' "$AGENT_LOG"; check "SIGHUP says so" $?
stop_agent; [ "$AGENT_STATUS" -eq 5 ]; check "stopped while EXPIRED for good: exit 5 (got $AGENT_STATUS)" $?

# ---- across a restart ----------------------------------------------------------------
start_agent tunneler t1 ENROLLMENT_TOKEN="$tok" RECONNECT_MIN_DELAY=1500ms RECONNECT_MAX_DELAY=2s
wait_for_state EXPIRED 5; check "a restart stays EXPIRED" $?
grep -qF 'msg="re-authentication failed before this start; this node needs an operator"' "$AGENT_LOG"
check "saying why" $?
sleep 2
[ "$(attempts)" -eq 0 ] && [ "$(count_lines "$CTL_LOG" 'msg="re-authentication refused"')" -eq "$seen" ]
check "and trying nothing" $?
stop_agent; [ "$AGENT_STATUS" -eq 5 ]; check "exit 5 again" $?
# What the hint says: a new token, then a restart.
run ctl token create --role tunneler --name t1 --replace
new_tok=$RUN_OUT
start_agent tunneler t1 ENROLLMENT_TOKEN="$new_tok"
wait_for_state ONLINE 10; check "the hint's fix brings it back" $?
[ "$(json_value node_id)" = "$NODE" ]; check "under the same node id" $?
[ ! -f "$AGENT_STATE/reauth.json" ]; check "the verdict is gone" $?
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "clean stop" $?
stop_controller
finish
