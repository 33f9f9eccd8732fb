#!/usr/bin/env bash
# Federation, the data plane (docs/FEDERATION.md, "Grants and the data
# plane"): a tunneler enrolled in b.example reaches an echo resource behind
# a connector of a.example once A's operator grants it, with every byte
# checked. The connector verifies the tunneler against b.example's bundle
# only; the tunneler verifies the connector against a.example's. A grant
# bound to a source CIDR the tunneler is not in, or past its expiry, is
# refused with `grant scope mismatch` and the reason on the connector,
# counted; revoking the grant, suspending or revoking the peer ends the
# live stream within 1 s.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fed_lib.sh"

fed_pair; check "A proposes b, B accepts" $?
wait_peer_state A b active 10; check "A: b is active" $?
fed_dataplane; check "connector dc1 on A, tunneler laptop on B" $?
LAPTOP_ID=spiffe://b.example/tunneler/laptop

run tcp_peer check "127.0.0.1:$FWD" 1 1K --timeout 5
expect_status 1 "nothing granted: no way through"
grep -q 'connectors=0 ' "$LAPTOP_LOG"; check "laptop's list has no connector yet" $?

# Grants are checked before they are stored.
run on A federation grant --peer b --resource pg --tunneler spiffe://a.example/tunneler/laptop
expect_status 1 "a grant to a tunneler of our own trust domain is refused"
expect_err_has "is not in peer b's trust domain b.example" "the refusal says why"
run on A federation grant --peer b --resource pg --tunneler spiffe://b.example/connector/dc9
expect_status 1 "a grant to a connector is refused"
run on A federation grant --peer b --resource pg --tunneler "$LAPTOP_ID" --source-cidr 10.0.0.5/8
expect_status 1 "a CIDR with host bits set is refused"
expect_err_has "host bits set" "the refusal names the CIDR problem"
run on A federation grant --peer b --resource nosuch --tunneler "$LAPTOP_ID"
expect_status 1 "a grant of an unknown resource is refused"

run on A federation grant --peer b --resource pg --tunneler "$LAPTOP_ID"
expect_status 0 "A grants pg to b's laptop"
expect_out_has "grant added id=" "the CLI prints the grant's id"
GRANT_ID="$(sed -n 's/.*grant added id=\([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")"
run on A federation grants --peer b
expect_out_has "resource=pg tunneler=$LAPTOP_ID" "the grant is listed"
expect_out_has "state=active" "and active"
curl -s "$A_HEALTH/metrics" | grep -q '^ztr_federation_grants{state="active"} 1$'
check "A's metrics: one active grant" $?
wait_list_with "$LAPTOP_LOG" 1 10; check "B hands laptop A's connector" $?
wait_for_line "$LAPTOP_LOG" 'msg="peer trust domains" count=1' 5
check "laptop trusts a.example's bundle for its connectors" $?
wait_for_line "$DC1_LOG" 'msg="peer trust domains" count=1' 5
check "dc1 trusts b.example's bundle for granted tunnelers" $?

run tcp_peer check "127.0.0.1:$FWD" 4 1M --timeout 20
expect_status 0 "4 streams of 1 MiB from b.example's laptop to a.example's resource, every byte checked"
expect_out "ok streams=4 bytes=4194304" "all bytes came back"
grep -q "msg=\"data session opened\" spiffe_id=$LAPTOP_ID" "$DC1_LOG"
check "dc1 admitted laptop by its b.example identity" $?

# controller explain on A: the federated tunneler, its grant, and dc1's own answer.
run on A explain --tunneler laptop@b.example --resource pg --connector dc1
expect_status 0 "explain a federated tunneler"
expect_out_has 'step=federation_peer ok=true detail="spiffe://b.example/tunneler/laptop is a tunneler of federation peer b (active)"' \
  "explain: the tunneler's trust domain is a peer in force"
expect_out_has "step=grant ok=true detail=\"federation grant $GRANT_ID: laptop@b.example to pg, source_cidrs any, expires never\"" \
  "explain: the federation grant and its scope"
expect_out_has 'step=connector_answer ok=true detail="dc1 would allow' "explain: dc1 permits it by the grant"
expect_out_has "verdict=allow" "explain: allowed"
run on A explain --tunneler laptop@c.example --resource pg
expect_out_has 'verdict=deny first_failure="unknown trust domain: no federation peer holds the trust domain of laptop@c.example"' \
  "explain: a trust domain that is no peer's"

# A second resource, granted only from a CIDR the tunneler is not in.
start_peer echo || exit 1; WEB_PORT=$PEER_PORT
on A resource add web --connector dc1 >/dev/null
stop_agent "$DC1_PID"
use A
start_agent connector dc1 TRUST_DOMAIN=a.example \
  RESOURCES="pg=127.0.0.1:$ECHO_PORT,web=127.0.0.1:$WEB_PORT" || exit 1
keep_agent DC1
wait_for_line "$DC1_LOG" 'msg="allowlist received"' 10
run on A federation grant --peer b --resource web --tunneler "$LAPTOP_ID" --source-cidr 10.0.0.0/8
expect_status 0 "web is granted, from 10.0.0.0/8 only"
WEB_GRANT="$(sed -n 's/.*grant added id=\([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")"
stop_agent "$LAPTOP_PID"
use B
FWD_WEB=$(free_port)
start_agent tunneler laptop TRUST_DOMAIN=b.example CONNECTOR_RETRY_MIN=50ms \
  CONNECTOR_RETRY_MAX=100ms FORWARDS="127.0.0.1:$FWD=pg@a.example,127.0.0.1:$FWD_WEB=web@a.example" \
  || exit 1
keep_agent LAPTOP
wait_list_with "$LAPTOP_LOG" 1 10; check "laptop back with both forwards" $?
wait_through "127.0.0.1:$FWD" 50
run tcp_peer check "127.0.0.1:$FWD_WEB" 1 1K --timeout 5
expect_status 1 "web from 127.0.0.1 is refused"
wait_for_line "$DC1_LOG" 'msg="grant scope mismatch"' 5
line="$(grep 'msg="grant scope mismatch"' "$DC1_LOG" | tail -1)"
grep -q "spiffe_id=$LAPTOP_ID" <<<"$line" && grep -q 'resource="web"' <<<"$line" &&
  grep -qF "reason=\"source 127.0.0.1 is outside grant $WEB_GRANT's source_cidrs [" <<<"$line" &&
  grep -qF '10.0.0.0/8' <<<"$line"
check "dc1 logs grant scope mismatch with the tunneler, resource and reason" $?
echo "  $line"
metric_at_least "$DC1_URL" ztr_grant_scope_mismatch_total 1
check "dc1 counts it (ztr_grant_scope_mismatch_total)" $?
grep -q 'refused the stream: grant scope mismatch' "$LAPTOP_LOG"
check "laptop is told grant scope mismatch" $?
run tcp_peer check "127.0.0.1:$FWD" 2 64K --timeout 10
expect_status 0 "pg still works (its grant has no CIDR)"

# Re-granting web with an expiry replaces the CIDR; past it, refused.
run on A federation grant --peer b --resource web --tunneler "$LAPTOP_ID" --expires 3s
expect_status 0 "web re-granted for 3 s from anywhere"
expect_out_has "id=$WEB_GRANT " "re-granting the same scope keeps the grant's id"
wait_through "127.0.0.1:$FWD_WEB" 20; check "web works within the expiry" $?
sleep 3.5
run tcp_peer check "127.0.0.1:$FWD_WEB" 1 1K --timeout 5
expect_status 1 "web is refused once the grant expired"
run on A events --source federation_grant_expiry
expect_out_has "federation grant $WEB_GRANT expired" "A records the expiry as an event"
run on A federation grants
expect_out_has "id=$WEB_GRANT" "an expired grant is still listed"
expect_out_has "state=expired" "as expired"

# Revoking the grant ends a live stream within 1 s.
hold_stream() {  # a stream through the pg forward that stays open 30 s
  tcp_peer hold "127.0.0.1:$FWD" 1 30 >"$E2E_TMP/hold.out" 2>&1 &
  HOLD_PID=$!
  E2E_PIDS+=("$HOLD_PID")
  sleep 1
}
ended_within() {  # ended_within MS: the held stream ended within MS of $T0
  local i
  for ((i = 0; i < 60; i++)); do
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.05
  done
  ELAPSED=$(($(date +%s%3N) - T0))
  ! kill -0 "$HOLD_PID" 2>/dev/null && [ "$ELAPSED" -lt "$1" ]
}
hold_stream
T0=$(date +%s%3N)
run on A federation revoke-grant "$GRANT_ID"
expect_status 0 "A revokes laptop's pg grant"
ended_within 1000; check "the live stream ended ${ELAPSED} ms after the revoke (< 1000)" $?
echo "  revoke-grant -> live stream ended: ${ELAPSED} ms"
run tcp_peer check "127.0.0.1:$FWD" 1 1K --timeout 5
expect_status 1 "no new stream after the revoke"

# Suspending the peer ends its streams too; resuming lets it back.
on A federation grant --peer b --resource pg --tunneler "$LAPTOP_ID" >/dev/null
wait_through "127.0.0.1:$FWD" 50; check "granted again, pg works again" $?
hold_stream
T0=$(date +%s%3N)
run on A federation suspend b --reason "audit"
ended_within 1000; check "suspending b ended the live stream in ${ELAPSED} ms (< 1000)" $?
echo "  suspend -> live stream ended: ${ELAPSED} ms"
run on A federation resume b
expect_status 0 "b resumed"
wait_through "127.0.0.1:$FWD" 50; check "after resume, pg works again" $?

# Revoking the peer: its bundle leaves dc1 and the live stream ends.
hold_stream
T0=$(date +%s%3N)
run on A federation revoke b
expect_status 0 "A revokes b"
ended_within 1000; check "revoking b ended the live stream in ${ELAPSED} ms (< 1000)" $?
echo "  peer revoke -> live stream ended: ${ELAPSED} ms"
wait_for_line "$DC1_LOG" 'msg="peer trust domains" count=0' 5
check "dc1 no longer trusts b.example" $?
run tcp_peer check "127.0.0.1:$FWD" 1 1K --timeout 5
expect_status 1 "no way through after the revoke"
stop_agent "$LAPTOP_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "laptop stops cleanly" $?
stop_agent "$DC1_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "dc1 stops cleanly" $?
fed_stop_all
finish
