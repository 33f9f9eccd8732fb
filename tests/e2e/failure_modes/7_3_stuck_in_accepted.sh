#!/usr/bin/env bash
# Failure mode 7.3 (seed 003): both sides stay `accepted`, never enrolled or
# active: heartbeats do not flow. In ztr the acceptor (B) dials the
# proposer's federation listener; here the address B accepted through
# worked once (a relay) and not afterwards. B's log says why at every
# attempt: `federation link failed` with the peer, the address and the
# reason. Fix: make that address reachable; or revoke on both sides and
# accept again with an address that is.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../fed_lib.sh"
fm_mode 7.3 "Peer stuck in accepted" "federation link failed"
fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 || exit 1
fed_start B b.example || exit 1
T="$E2E_TMP"
fed_peer relay --to "$A_FED" --port-file "$T/relay-port" &
E2E_PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$T/relay-port" ] && break; sleep 0.1; done
relay="127.0.0.1:$(cat "$T/relay-port")"
on A federation propose --name b >"$T/token"
run on B federation accept --url "$relay" --name a --token-file "$T/token"
expect_status 0 "the accept itself gets through"
sleep 2
[ "$(peer_state A b)" = accepted ]; check "A: b stays accepted" $?
[ "$(peer_state B a)" = accepted ]; check "B: a stays accepted" $?
fm_seen "$B_LOG" "federation link failed"
grep -q "msg=\"federation link failed\" peer=a remote=$relay reason=\".*refused" "$B_LOG"
check "the line names the peer, the address and the reason" $?
[ "$(grep -c 'msg="federation link failed" peer=a' "$B_LOG")" -ge 2 ]
check "B keeps trying (with backoff)" $?
run on A federation list
expect_out_has "state=accepted" "A's list shows accepted"
grep -q "heartbeat_age_s=- " <<<"$RUN_OUT"
check "with no heartbeat ever" $?

# The fix: revoke on both sides, propose again, accept at the real address.
on A federation revoke b >/dev/null && on B federation revoke a >/dev/null
check "revoke on both sides" $?
on A federation propose --name b >"$T/token2"
run on B federation accept --url "$A_FED" --name a --token-file "$T/token2"
expect_status 0 "accept at the listener's real address"
wait_peer_state A b active 10; check "A: b active" $?
wait_peer_state B a active 10; check "B: a active" $?
fed_stop_all
fm_trim
fm_finish
