#!/usr/bin/env bash
# Federation, the peering half (docs/FEDERATION.md): two controllers,
# a.example and b.example, on loopback. A proposes, B accepts with the
# token; heartbeats over the mTLS link take both rows to active; B's
# controller stops and A's sweep marks it degraded, B returns and it is
# active again with no operator action; suspend and resume; a CA rotation
# on A reaches B's stored bundle with the next heartbeats; revoke closes the
# live link within 1 s and the revoked peer cannot link again. A CA
# rotation on B reaches A the same way.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fed_lib.sh"

fed_pair; check "A proposes b, B accepts with the token" $?
run on A federation list
expect_out_has "name=b trust_domain=b.example" "A lists b with its trust domain"
wait_peer_state A b active 10; check "A: b is active" $?
wait_peer_state B a active 10; check "B: a is active" $?
grep -q 'msg="federation peer state" peer=a trust_domain=a.example from=accepted to=enrolled' "$B_LOG"
check "B: accepted -> enrolled at the first heartbeat" $?
grep -q 'msg="federation peer state" peer=a trust_domain=a.example from=enrolled to=active' "$B_LOG"
check "B: enrolled -> active at the first acknowledged round trip" $?
[ "$(peer_field A b token_pending)" = "False" ]; check "A cleared the token digest" $?

run on A events --source federation_accept
expect_out_has "source=federation_accept" "A's accept event has its source"
expect_out_has "state proposed -> accepted" "A's accept event says what changed"
run on B events --source federation_accept
expect_out_has "peer=a trust_domain=a.example" "B recorded its accept too"
run on A events --source federation_heartbeat_sweep
expect_out "" "no sweep event while heartbeats flow"
curl -s "$A_HEALTH/metrics" >"$E2E_TMP/metrics"
grep -q '^ztr_federation_peers{state="active"} 1$' "$E2E_TMP/metrics"
check "metrics: one active peer" $?
grep -q '^ztr_federation_peer_last_heartbeat_age_seconds{peer="b"} [0-9]' "$E2E_TMP/metrics"
check "metrics: b's heartbeat age" $?

# B's controller stops: A's sweep marks b degraded, with the reason.
fed_stop B
wait_peer_state A b degraded 8; check "A: b degraded once its heartbeat is stale" $?
reason="$(peer_field A b reason)"
[[ "$reason" == "no heartbeat for "*s ]]; check "the reason is recorded ($reason)" $?
grep -q 'msg="federation heartbeat sweep" swept=1 degraded=1' "$A_LOG"
check "the sweep logged swept= and degraded= counts" $?
run on A events --source federation_heartbeat_sweep
expect_out_has "state active -> degraded reason=no heartbeat for" "the sweep recorded an event"
fed_start B b.example; check "B restarts with its state" $?
wait_peer_state A b active 10; check "A: b active again with no operator action" $?

# Suspend (with a reason) and resume on A.
run on A federation suspend b --reason "maintenance window"
expect_status 0 "suspend b"
expect_out_has "state=suspended" "b is suspended"
[ "$(peer_field A b reason)" = "maintenance window" ]; check "the suspension keeps its reason" $?
wait_for_line "$B_LOG" 'federation peer suspended: maintenance window' 5
check "B is told why its heartbeats are refused" $?
sleep 1
[ "$(peer_state A b)" = suspended ]; check "heartbeats do not move a suspended peer" $?
run on A federation resume b
expect_status 0 "resume b"
wait_peer_state A b active 10; check "A: b active after resume" $?

# A's CA rotates: B's stored bundle for a follows with the next heartbeats.
[ "$(peer_field B a bundle_version)" = 1 ]; check "B holds A's bundle version 1" $?
run on A ca rotate
expect_status 0 "A rotates its CA"
for _ in $(seq 1 30); do [ "$(peer_field B a bundle_version)" = 2 ] && break; sleep 0.1; done
[ "$(peer_field B a bundle_version)" = 2 ]; check "B stored A's bundle version 2" $?
[ "$(peer_field B a bundle | grep -c 'BEGIN CERTIFICATE')" = 2 ]
check "B's stored bundle holds both of A's CAs" $?
grep -q 'msg="federation peer bundle updated" peer=a trust_domain=a.example version=2' "$B_LOG"
check "B logged the bundle update" $?
[ "$(peer_state B a)" = active ]; check "the rotation did not interrupt the link" $?
# And the other way: B's rotation reaches A.
run on B ca rotate
expect_status 0 "B rotates its CA"
for _ in $(seq 1 30); do [ "$(peer_field A b bundle_version)" = 2 ] && break; sleep 0.1; done
[ "$(peer_field A b bundle_version)" = 2 ]; check "A stored B's bundle version 2" $?
sleep 1
[ "$(peer_state A b)" = active ]; check "b stays active on the rotated bundle" $?

# Revoke on A: the live link closes within 1 s, and stays closed.
t_revoke="$(date -u +%s%3N)"
run on A federation revoke b
expect_status 0 "revoke b"
expect_out_has "state=revoked" "b is revoked"
wait_for_line "$B_LOG" 'msg="federation link down" peer=a' 3
check "B saw its link close" $?
t_down="$(log_epoch_ms "$(grep 'msg="federation link down" peer=a' "$B_LOG" | tail -1)")"
elapsed=$((t_down - t_revoke))
[ "$elapsed" -ge 0 ] && [ "$elapsed" -lt 1000 ]
check "the live link closed ${elapsed} ms after the revoke command (< 1000)" $?
echo "  revoke -> link closed on B: ${elapsed} ms"
[ -z "$(peer_field A b bundle)" ]; check "b's bundle is deleted" $?
wait_for_line "$A_LOG" 'msg="federation handshake refused"' 5
check "B's redial is refused at the handshake" $?
sleep 1
[ "$(peer_state A b)" = revoked ]; check "b stays revoked" $?
run on A federation resume b
expect_status 1 "a revoked peer cannot be resumed"
expect_err_has "revoked: propose again from scratch" "the refusal says what to do"
run on A federation propose --name b
expect_status 0 "b may be proposed again from scratch"
[ "$(peer_state A b)" = proposed ]; check "the new row starts at proposed" $?

# An accept whose proposer never answers (a listener that reads and says
# nothing) waits its 10 s; B's controller serves everything else meanwhile.
start_peer sink || exit 1; HOLE=$PEER_PORT
fed_start C c.example || exit 1
on C federation propose --name hole --ttl 1h >"$E2E_TMP/token-hole"
ADMIN_URL="$B_URL" "$ZTR_TEST_BIN/controller" federation accept --url "127.0.0.1:$HOLE" \
  --name hole --token-file "$E2E_TMP/token-hole" >"$E2E_TMP/hole.out" 2>&1 &
HOLE_PID=$!
sleep 1
t0=$(date +%s%3N)
run on B federation list
t1=$(date +%s%3N)
expect_status 0 "B answers its admin API while an accept waits"
[ $((t1 - t0)) -lt 2000 ]; check "at once ($((t1 - t0)) ms), not after the accept's 10 s" $?
health "$B_HEALTH"; [ "$HEALTH_CODE" = 200 ]; check "B's /health answers meanwhile" $?
wait "$HOLE_PID"; hole_status=$?
[ "$hole_status" -eq 1 ]; check "the accept fails (exit $hole_status)" $?
# Whichever 10 s bound fires first names it: the accept's or the handshake's.
grep -qE "no answer within 10 s|TLS handshake timed out" "$E2E_TMP/hole.out"
check "with the reason: no answer within 10 s (or the handshake's timeout)" $?
fed_stop_all
finish
