#!/usr/bin/env bash
# Expiry is a state on both ends (seed 001's "stale" agent, reproduced):
# renewals keep failing while the control stream stays up (cert.pem.new is
# a directory, as a full or read-only disk would leave it), and the agent
# has no way to re-authenticate (REAUTH_ON_EXPIRY=false, the token removed
# after enrollment as docs/OPERATIONS.md says). At not_after the agent
# leaves ONLINE by itself — a timer, before any disconnect — with /health
# 503, telemetry.auth.expired 1 and one log line; the controller ends the
# session and shows the node EXPIRED (not ONLINE, not merely OFFLINE). The
# controller's own refusal of a heartbeat on an expired certificate is
# tests/unit/test_agent.c (test_controller_refuses_heartbeats_after_not_after)
# and tests/hostile/expired_control_session.sh.
. "$(dirname "$0")/lib.sh"
start_controller ctl SVID_TTL=5s || exit 1
start_agent tunneler t1 ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name t1)"
wait_for_state ONLINE 10; check "enrolled, ONLINE" $?
stop_agent
# The documented setup: no token once enrolled.
start_agent tunneler t1 REAUTH_ON_EXPIRY=false
wait_for_state ONLINE 10; check "ONLINE again without a token" $?
# A certificate loaded from disk renews at once; block the ones after it.
wait_for_line "$AGENT_LOG" 'msg="certificate renewed"' 5
mkdir -p "$AGENT_STATE/cert.pem.new/blocked"
health; NODE=$(json_value node_id); NOT_AFTER=$(json_value not_after)
wait_for_line "$AGENT_LOG" 'msg="renewal failed"' 6
check "renewals fail while the control stream stays up" $?
health
[ "$(json_value state)" = ONLINE ] && [ "$HEALTH_CODE" = 200 ] && [ "$(date +%s)" -le "$NOT_AFTER" ]
check "still ONLINE (200) before not_after (got $(json_value state) $HEALTH_CODE)" $?
[ "$(json_value telemetry.auth.expired)" = 0 ]; check "telemetry.auth.expired 0 before" $?

# ---- not_after passes --------------------------------------------------------------
wait_for_line "$AGENT_LOG" 'msg="certificate expired"' $((NOT_AFTER - $(date +%s) + 5))
check "the agent notices the expiry by itself" $?
at=$(log_epoch "$(grep -F 'msg="certificate expired"' "$AGENT_LOG" | head -1)")
[ "$at" -gt "$NOT_AFTER" ] && [ "$at" -le $((NOT_AFTER + 2)) ]
check "it leaves ONLINE at not_after ($NOT_AFTER), not later (logged at $at)" $?
grep -qF 'from=ONLINE to=REAUTHENTICATING reason="certificate expired"' "$AGENT_LOG"
check "straight from ONLINE: ONLINE → REAUTHENTICATING" $?
expired_line=$(grep -nF 'msg="certificate expired"' "$AGENT_LOG" | head -1 | cut -d: -f1)
lost_line=$(grep -nF 'msg="control-plane stream lost"' "$AGENT_LOG" | head -1 | cut -d: -f1)
[ -z "$lost_line" ] || [ "$lost_line" -gt "$expired_line" ]
check "by its timer, not because the stream dropped" $?
wait_for_state EXPIRED 5
[ "$HEALTH_CODE" = 503 ]; check "/health 503 EXPIRED (got $HEALTH_CODE $(json_value state))" $?
[ "$(json_value telemetry.auth.expired)" = 1 ]; check "telemetry.auth.expired +1" $?
[ "$(json_value connected)" = false ]; check "agent.connected false" $?
[ "$(count_lines "$AGENT_LOG" 'msg="certificate expired"')" -eq 1 ]; check "one log line for the expiry" $?
grep -F 'msg="certificate expired and no way to re-authenticate"' "$AGENT_LOG" |
  grep -qF 'hint="controller token create --role tunneler --name t1 --replace'
check "and the operator's hint" $?
run curl -s "$AGENT_HEALTH_URL/metrics"
expect_out_has 'ztr_agent_state{role="tunneler",state="EXPIRED"} 1' "/metrics: EXPIRED"
expect_out_has 'ztr_agent_auth_expired_total{role="tunneler"} 1' "/metrics: auth expired 1"

# ---- the controller's end ------------------------------------------------------------
# The agent closed its stream on its own timer; the controller records
# the node's last certificate (a renewal it issued may outlive the one the
# agent could not save by a second or two) and shows EXPIRED once that ran
# out too.
wait_for_line "$CTL_LOG" "msg=\"node disconnected\" node=$NODE" 5
check "the controller ends the session" $?
for _ in $(seq 1 40); do
  run ctl node list; grep -qF "id=$NODE name=t1 role=tunneler status=EXPIRED" <<<"$RUN_OUT" && break
  sleep 0.25
done
expect_out_has "id=$NODE name=t1 role=tunneler status=EXPIRED revoked=false" "node list: EXPIRED"
expect_out_has "renewal_overdue=true" "and its renewal overdue"
run curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes"
expect_out_has '"status":"EXPIRED"' "admin API: EXPIRED"
sleep 1
[ "$(count_lines "$CTL_LOG" "msg=\"node connected\" node=$NODE")" -eq 2 ]
check "the expired agent opens no new session" $?
kill -0 "$AGENT_PID"; check "the agent stays up (its /health answers)" $?
stop_agent; [ "$AGENT_STATUS" -eq 5 ]; check "stopped while EXPIRED for good: exit 5 (got $AGENT_STATUS)" $?
stop_controller
finish
