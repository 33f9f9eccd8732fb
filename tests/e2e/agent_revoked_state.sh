#!/usr/bin/env bash
# Revocation is visible: a revoked agent stays up in the final REVOKED
# state — /health 503 with telemetry.auth.revoked = 1 and agent.connected
# false, no reconnect loop, nothing served — and exits 3 only when it is
# stopped. Seed 000's triage ("Reconnect and Auth Failure Loops") is run
# step by step against this real output: query /health, confirm the auth
# mode, compare telemetry deltas, read "high auth.revoked" as credential
# invalidation, remediate (a new identity) and verify (agent.connected
# true, the controller's node ONLINE across a heartbeat window).
. "$(dirname "$0")/lib.sh"
start_controller ctl || exit 1
start_peer http || exit 1; WEB_PORT=$PEER_PORT
ctl resource add web --connector dc1 >/dev/null
ctl allow --tunneler laptop --resource web >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$WEB_PORT"
keep_agent DC1
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=web"
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received" version=' 10
wait_for_state ONLINE 10 "$LAPTOP_URL"; check "tunneler ONLINE" $?
run curl -s -m 5 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "traffic flows before the revocation"
LAPTOP_NODE=$(json_value node_id)

# ---- the tunneler is revoked --------------------------------------------------------------
run ctl node revoke "$LAPTOP_NODE" --reason "laptop stolen"
expect_status 0 "node revoke"
wait_for_state REVOKED 5 "$LAPTOP_URL"; check "the agent stays up in REVOKED" $?
kill -0 "$LAPTOP_PID"; check "its process runs on" $?
grep -F 'msg="node revoked by the controller" reason="laptop stolen"' "$LAPTOP_LOG" |
  grep -qF 'telemetry.auth.revoked=1'
check "the journal line carries the reason and telemetry.auth.revoked=1" $?

# Seed 000, "Initial Triage" 1: query GET /health on the affected node.
health "$LAPTOP_URL"; FIRST="$HEALTH_BODY"
[ "$HEALTH_CODE" = 503 ]; check "triage 1: /health answers 503" $?
# 2: the mode/auth path in the agent payload.
grep -qF '"agent":{"connected":false,"state":"REVOKED","authMode":"mtls-svid"}' <<<"$HEALTH_BODY"
check "triage 2: agent payload: connected=false, state REVOKED, authMode mtls-svid" $?
# 3: telemetry deltas (here over 3 s instead of 5 minutes).
[ "$(json_value telemetry.auth.revoked)" = 1 ]; check "triage 3: telemetry.auth.revoked = 1" $?
sleep 3
health "$LAPTOP_URL"
for key in telemetry.auth.revoked telemetry.reconnect.scheduled telemetry.reconnect.failed \
  telemetry.auth.unavailable telemetry.auth.expired; do
  [ "$(json_value "$key" "$FIRST")" = "$(json_value "$key")" ]
  check "triage 3: $key does not move ($(json_value "$key"))" $?
done
[ "$(json_value telemetry.reconnect.scheduled)" = 0 ]; check "no reconnect loop at all" $?
# "High auth.revoked: credential invalidation": the controller agrees.
run ctl node list
expect_out_has "id=$LAPTOP_NODE name=laptop role=tunneler status=OFFLINE revoked=true" \
  "C&C: the node is revoked (node list)"
run curl -s "$LAPTOP_URL/metrics"
expect_out_has 'ztr_agent_state{role="tunneler",state="REVOKED"} 1' "/metrics: REVOKED"
expect_out_has 'ztr_agent_auth_revoked_total{role="tunneler"} 1' "/metrics: auth revoked 1"
run curl -s -m 5 "http://127.0.0.1:$FWD/"
[ -z "$RUN_OUT" ]; check "the revoked tunneler reaches nothing" $?
kill -HUP "$LAPTOP_PID"; sleep 0.5
grep -qF 'msg="SIGHUP: nothing to retry" state=REVOKED' "$LAPTOP_LOG"; check "SIGHUP retries nothing" $?
stop_agent "$LAPTOP_PID"; [ "$AGENT_STATUS" -eq 3 ]; check "stopped while REVOKED: exit 3 (got $AGENT_STATUS)" $?
grep -qF 'msg="agent stopped" exit_status=3' "$LAPTOP_LOG"; check "the journal says exit_status=3" $?
# Started again it is told again, and stays REVOKED.
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=web"
wait_for_state REVOKED 10; check "a restarted revoked agent is REVOKED again" $?
! grep -qF 'msg="control-plane stream connected"' "$AGENT_LOG"; check "it never counts as connected" $?
stop_agent; [ "$AGENT_STATUS" -eq 3 ]; check "exit 3 again" $?

# ---- a revoked connector stops serving ---------------------------------------------------
DC1_NODE=$(health "$DC1_URL"; json_value node_id)
run ctl node revoke "$DC1_NODE"
wait_for_state REVOKED 5 "$DC1_URL"; check "the connector stays up in REVOKED" $?
[ "$HEALTH_CODE" = 503 ] && [ "$(json_value telemetry.auth.revoked)" = 1 ]
check "connector /health 503, telemetry.auth.revoked 1" $?
stop_agent "$DC1_PID"; [ "$AGENT_STATUS" -eq 3 ]; check "connector exit 3 when stopped" $?

# ---- seed 000 "Remediation" 2 and "Verification" ----------------------------------------
# Replace the revoked credentials: a new NODE_NAME, an empty STATE_DIR, a token.
start_agent tunneler laptop2 ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop2)"
wait_for_state ONLINE 10; check "remediation: a new identity comes ONLINE" $?
grep -qF '"agent":{"connected":true,"state":"ONLINE","authMode":"mtls-svid"}' <<<"$HEALTH_BODY"
check "verification 1: agent.connected=true" $?
first_revoked=$(json_value telemetry.auth.revoked)
sleep 1.5   # more than a heartbeat window (3 x 300 ms)
health; [ "$(json_value telemetry.auth.revoked)" = "$first_revoked" ] && [ "$first_revoked" = 0 ]
check "verification 2: auth counters flat" $?
run ctl node list
expect_out_has "name=laptop2 role=tunneler status=ONLINE" "verification 3: C&C node ONLINE across a heartbeat window"
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "clean stop" $?
stop_controller
finish
