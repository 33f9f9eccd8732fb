#!/usr/bin/env bash
# Re-authentication by proof of possession, in the documented setup: the
# token is removed after enrollment (docs/OPERATIONS.md) and single-use
# anyway. (1) The certificate runs out while the controller is away: the
# agent leaves ONLINE at not_after, makes one attempt whose connection
# retries on the backoff (6 s SVID_TTL, 50..300 ms backoff), and once the
# controller is back the expired key proves the node: a new certificate
# under the same node id, no token. (2) The certificate ran out while the
# agent was down: the same at start. (3) REAUTH_ON_EXPIRY=false: a retained
# token with uses left is the way.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
start_controller ctl SVID_TTL=6s || exit 1
start_agent tunneler t1 ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name t1)"
wait_for_state ONLINE 10; check "enrolled with a single-use token" $?
NODE=$(json_value node_id)
stop_agent
start_agent tunneler t1
wait_for_state ONLINE 10; check "restarted without a token, ONLINE" $?
# A certificate loaded from disk is renewed at once; the controller then
# leaves before the next renewal (about 3 s later).
wait_for_line "$AGENT_LOG" 'msg="certificate renewed"' 5; check "renewed after the restart" $?
stop_controller
health; NOT_AFTER=$(json_value not_after)
SERIAL=$(serial "$AGENT_STATE/cert.pem")

# ---- (1) expired while the controller is away ----------------------------------------
wait_for_line "$AGENT_LOG" 'msg="certificate expired"' $((NOT_AFTER - $(date +%s) + 5))
check "at not_after the agent leaves by itself" $?
grep -qF 'to=REAUTHENTICATING reason="certificate expired"' "$AGENT_LOG"; check "REAUTHENTICATING" $?
wait_for_state REAUTHENTICATING 3
[ "$HEALTH_CODE" = 503 ]; check "/health 503 while re-authenticating" $?
sleep 1.5
health
[ "$(json_value state)" = REAUTHENTICATING ]; check "still the same attempt while unreachable" $?
[ "$(count_lines "$AGENT_LOG" 'msg="re-authenticating"')" -eq 1 ]
check "one attempt per transition, however many connection retries" $?
grep -qF '"reauth":{"method":"proof-of-possession","failures":0,' <<<"$HEALTH_BODY"
check "/health reauth: proof-of-possession, no failure counted" $?
[ "$(json_value telemetry.auth.unavailable)" -ge 3 ]; check "telemetry.auth.unavailable counts the retries" $?
[ "$(json_value telemetry.auth.expired)" = 1 ]; check "telemetry.auth.expired 1" $?
start_controller ctl SVID_TTL=6s CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_state ONLINE 10; check "ONLINE again once the controller is back" $?
grep -qF "msg=\"re-authenticated\" node=$NODE spiffe_id=spiffe://example.org/tunneler/t1 method=proof-of-possession" "$AGENT_LOG"
check "re-authenticated by proof of possession, same node" $?
[ "$(json_value node_id)" = "$NODE" ]; check "/health: the same node id" $?
[ "$(json_value not_after)" -gt "$(date +%s)" ]; check "/health: a valid certificate" $?
s=$(serial "$AGENT_STATE/cert.pem"); [ -n "$s" ] && [ "$s" != "$SERIAL" ]; check "a new certificate ($SERIAL → $s)" $?
grep -qF '"reauth":{"method":"none","failures":0,' <<<"$HEALTH_BODY"; check "the breaker at 0 after the register" $?
grep -qF "msg=\"node re-authenticated\" node=$NODE" "$CTL_LOG"; check "controller: node re-authenticated" $?
run ctl events
expect_out_has "kind=reauthenticated node=$NODE detail=\"re-authenticated by proof of possession" "event: reauthenticated"
! grep -q "kind=enrolled node=$NODE detail=\"re-enrolled" <<<"$RUN_OUT"; check "no token enrollment" $?
run ctl node list
expect_out_has "id=$NODE name=t1 role=tunneler status=ONLINE" "node list: ONLINE"
run curl -s "$HEALTH_URL/metrics"
expect_out_has "ztr_controller_reauth_total 1" "controller /metrics: one re-authentication"

# ---- (2) expired while the agent was down --------------------------------------------
stop_agent
health_na=$(json_value not_after)
while [ "$(date +%s)" -le "$health_na" ]; do sleep 0.2; done
start_agent tunneler t1
wait_for_state ONLINE 10; check "an agent started after its expiry re-authenticates" $?
grep -qF 'from=UNENROLLED to=REAUTHENTICATING reason="certificate expired while the agent was down"' "$AGENT_LOG"
check "at start: REAUTHENTICATING" $?
[ "$(json_value node_id)" = "$NODE" ]; check "same node id" $?
[ "$(count_lines "$AGENT_LOG" 'msg="control-plane stream connected"')" -eq 1 ]; check "one stream connected" $?

# ---- (3) REAUTH_ON_EXPIRY=false: a retained token with uses left --------------------
stop_agent
health_na=$(grep -F 'msg="re-authenticated"' "$AGENT_LOG" | tail -1 | sed -n 's/.*not_after=\([0-9]*\).*/\1/p')
while [ "$(date +%s)" -le "${health_na:-0}" ]; do sleep 0.2; done
tok=$(ctl token create --role tunneler --name t1 --uses 2)
start_agent tunneler t1 REAUTH_ON_EXPIRY=false ENROLLMENT_TOKEN="$tok"
wait_for_state ONLINE 10; check "REAUTH_ON_EXPIRY=false: the token re-enrolls it" $?
grep -qF 'msg="re-authenticating" method=token' "$AGENT_LOG"; check "method=token" $?
! grep -qF 'reauth_begin' "$CTL_LOG"; check "no proof of possession tried" $?
[ "$(json_value node_id)" = "$NODE" ]; check "same node id" $?
run ctl token list
expect_out_has "name=t1 prefix=false uses_left=1" "one use of the token spent"
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "clean stop (exit $AGENT_STATUS)" $?
! grep -qE '[0-9a-f]{16}\.[0-9a-f]{64}' "$T"/agent-*.log; check "no token in any agent log" $?
stop_controller
finish
