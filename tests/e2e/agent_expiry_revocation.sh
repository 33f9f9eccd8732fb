#!/usr/bin/env bash
# A certificate that expired while the agent was down (SVID_TTL=10s): with a
# token that still has uses the agent re-enrolls (`re-enrolling with the
# retained token`) and is ONLINE with a new certificate under the same node;
# with a used-up token it tries 3 times, then sits in EXPIRED with /health
# still serving and a hint to issue a new token; without a token it is
# EXPIRED at once with that hint. Revocation: `node revoked by the
# controller`, exit status 3, and a revoked node cannot come back.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl SVID_TTL=10s || exit 1

serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
not_after() { "$PKI" inspect "$1" | sed -n 's/.*not_after=.*(\([0-9]*\))/\1/p'; }
HINT_SINGLE="controller token create --role tunneler --name single"

# ---- three agents enroll, then stop before their first renewal -----------------
reuse_tok=$(ctl token create --role tunneler --name reuse --uses 5)
single_tok=$(ctl token create --role tunneler --name single)
start_agent tunneler reuse ENROLLMENT_TOKEN="$reuse_tok"; R_PID=$AGENT_PID R_URL=$AGENT_HEALTH_URL
start_agent tunneler single ENROLLMENT_TOKEN="$single_tok"; S_PID=$AGENT_PID S_URL=$AGENT_HEALTH_URL
start_agent connector none ENROLLMENT_TOKEN="$(ctl token create --role connector --name none --address 127.0.0.1)"
N_PID=$AGENT_PID N_URL=$AGENT_HEALTH_URL
for url in "$R_URL" "$S_URL" "$N_URL"; do
  wait_for_state ONLINE 10 "$url"; check "agent ONLINE before the expiry ($url)" $?
done
health "$R_URL"; R_NODE=$(json_value node_id)
health "$S_URL"; S_NODE=$(json_value node_id)
for pid in "$R_PID" "$S_PID" "$N_PID"; do
  stop_agent "$pid"; [ "$AGENT_STATUS" -eq 0 ]; check "agent stopped cleanly (exit $AGENT_STATUS)" $?
done
R_SERIAL=$(serial "$T/agent-reuse/cert.pem")
expire=0
for n in reuse single none; do
  a=$(not_after "$T/agent-$n/cert.pem"); [ "${a:-0}" -gt "$expire" ] && expire=$a
done
[ "$expire" -gt "$(date +%s)" ]; check "certificates still valid when the agents stop" $?

# ---- revocation (while those certificates run out) --------------------------------
start_agent tunneler lost ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name lost)"
V_PID=$AGENT_PID V_URL=$AGENT_HEALTH_URL V_LOG=$AGENT_LOG
wait_for_state ONLINE 10; check "agent to revoke ONLINE" $?
V_NODE=$(json_value node_id)
run ctl node revoke "$V_NODE" --reason "lost laptop"
expect_status 0 "node revoke"
expect_out_has "node revoked id=$V_NODE name=lost role=tunneler" "revoke confirms the node"
wait_agent_exit 10 "$V_PID"
[ "$AGENT_STATUS" -eq 3 ]; check "revoked agent exits with status 3 (got $AGENT_STATUS)" $?
grep -qF 'msg="node revoked by the controller" reason="lost laptop"' "$V_LOG"
check "agent logs: node revoked by the controller, with the reason" $?
grep -qF 'to=REVOKED' "$V_LOG"; check "state REVOKED logged" $?
grep -qF 'msg="agent stopped" exit_status=3' "$V_LOG"; check "exit status logged" $?
run curl -s -m 2 "$V_URL/health"
[ "$RUN_STATUS" -ne 0 ]; check "a revoked agent's /health is gone with it" $?
run ctl node list
expect_out_has "id=$V_NODE name=lost role=tunneler status=OFFLINE revoked=true" "node list: revoked"
# A revoked identity cannot come back: restarting gets revoked again.
start_agent tunneler lost
if [ "$AGENT_STATUS" -eq 255 ]; then wait_agent_exit 10; fi
[ "$AGENT_STATUS" -eq 3 ]; check "restarted revoked agent exits 3 again (got $AGENT_STATUS)" $?
grep -qF 'msg="node revoked by the controller"' "$AGENT_LOG"; check "and says why" $?
! grep -qF 'msg="control-plane stream connected"' "$AGENT_LOG"; check "it never counts as connected" $?

# ---- wait for the expiry -----------------------------------------------------------
# The agents compare whole seconds, expired once now > not_after.
while [ "$(date +%s)" -le "$expire" ]; do sleep 0.2; done

# A token with uses left: re-enrollment.
start_agent tunneler reuse ENROLLMENT_TOKEN="$reuse_tok"; R_PID=$AGENT_PID R_LOG=$AGENT_LOG
check "agent with an expired certificate starts" $?
wait_for_state ONLINE 10; check "re-enrolled agent ONLINE" $?
grep -qF 'msg="re-enrolling with the retained token" reason="certificate expired while the agent was down" attempt=1' "$R_LOG"
check "logs: re-enrolling with the retained token" $?
grep -qF "msg=\"enrolled\" node=$R_NODE " "$R_LOG"; check "re-enrolled under the same node id" $?
[ "$(json_value node_id)" = "$R_NODE" ]; check "/health: same node id" $?
[ "$(json_value not_after)" -gt "$(date +%s)" ]; check "/health: a valid certificate again" $?
[ "$(json_value telemetry.auth.expired)" -ge 1 ]; check "telemetry.auth.expired counted" $?
s=$(serial "$T/agent-reuse/cert.pem")
[ -n "$s" ] && [ "$s" != "$R_SERIAL" ]; check "a new certificate ($R_SERIAL → $s)" $?
[ "$(not_after "$T/agent-reuse/cert.pem")" -gt "$(date +%s)" ]; check "cert.pem valid again" $?
[ "$(count_lines "$R_LOG" 'msg="control-plane stream connected"')" -eq 1 ]; check "one stream connected" $?
run ctl token list
expect_out_has "name=reuse prefix=false uses_left=3" "re-enrollment used one more use of the token"
run ctl events
expect_out_has "kind=enrolled node=$R_NODE detail=\"re-enrolled tunneler reuse" "controller event: re-enrolled"

# A used-up token: 3 attempts, then EXPIRED (slow retries every 30 s).
start_agent tunneler single ENROLLMENT_TOKEN="$single_tok" RECONNECT_MAX_DELAY=30s
S_PID=$AGENT_PID S_URL=$AGENT_HEALTH_URL S_LOG=$AGENT_LOG
wait_for_state EXPIRED 10; check "used-up token: state EXPIRED" $?
[ "$HEALTH_CODE" = 503 ]; check "/health still serving: 503 EXPIRED (got $HEALTH_CODE)" $?
[ "$(json_value connected)" = false ]; check "/health connected=false" $?
[ "$(count_lines "$S_LOG" 'msg="re-enrolling with the retained token"')" -eq 3 ]; check "exactly 3 attempts" $?
[ "$(count_lines "$S_LOG" 'msg="invalid enrollment token"')" -eq 3 ]; check "each refused: invalid enrollment token" $?
grep -F 'msg="re-enrollment failed; issue a new token"' "$S_LOG" | grep -qF "$HINT_SINGLE, then set ENROLLMENT_TOKEN and restart"
check "log tells the operator to issue a new token" $?
grep -qF 'to=EXPIRED reason="re-enrollment failed 3 times"' "$S_LOG"; check "EXPIRED after 3 refusals" $?
kill -0 "$S_PID" 2>/dev/null; check "the agent keeps running" $?
sleep 0.5
[ "$(count_lines "$S_LOG" 'msg="re-enrolling with the retained token"')" -eq 3 ]; check "no fourth attempt right away" $?
run curl -s "$S_URL/metrics"
expect_out_has 'ztr_agent_state{role="tunneler",state="EXPIRED"} 1' "/metrics: EXPIRED"
run ctl events
[ "$(grep -c 'kind=denied .*name=single .*token used up' <<<"$RUN_OUT")" -eq 3 ]
check "controller saw exactly 3 refused re-enrollments" $?
# What the hint says works: a new token and a restart.
stop_agent "$S_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "EXPIRED agent exits 0 on SIGTERM" $?
start_agent tunneler single ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name single)"
S_PID=$AGENT_PID
wait_for_state ONLINE 10; check "a new token brings it back ONLINE" $?
[ "$(json_value node_id)" = "$S_NODE" ]; check "under the same node id" $?

# No token at all: EXPIRED at once, with the hint.
start_agent connector none
N_PID=$AGENT_PID N_LOG=$AGENT_LOG
wait_for_state EXPIRED 5; check "no token: state EXPIRED" $?
[ "$HEALTH_CODE" = 503 ]; check "/health 503 EXPIRED" $?
grep -F 'msg="certificate expired and no ENROLLMENT_TOKEN is configured"' "$N_LOG" |
  grep -qF "controller token create --role connector --name none --address IP..., then set ENROLLMENT_TOKEN and restart"
check "logs the expiry with the hint to issue a new token" $?
! grep -qF 're-enrolling' "$N_LOG"; check "no re-enrollment attempted" $?
grep -qF 'to=EXPIRED reason="certificate expired while the agent was down"' "$N_LOG"; check "EXPIRED at once" $?
run ctl events
! grep -q 'kind=denied .*name=none ' <<<"$RUN_OUT"; check "nothing sent to the controller" $?

for pid in "$R_PID" "$S_PID" "$N_PID"; do
  stop_agent "$pid"; [ "$AGENT_STATUS" -eq 0 ]; check "agent exits 0 (got $AGENT_STATUS)" $?
done
! grep -qE '[0-9a-f]{16}\.[0-9a-f]{64}' "$T"/agent-*.log; check "no token in any agent log" $?
stop_controller
finish
