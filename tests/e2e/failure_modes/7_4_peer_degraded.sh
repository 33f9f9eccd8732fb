#!/usr/bin/env bash
# Failure mode 7.4 (seed 003): an active peer flips to `degraded`: its last
# heartbeat is older than HEARTBEAT_STALE_AFTER (here 2 s, swept every
# 500 ms). The sweep records the reason (`no heartbeat for Ns`), logs
# `federation heartbeat sweep` with swept= and degraded=, and adds an event
# with source federation_heartbeat_sweep. When the peer is back, the next
# heartbeat makes it active again, with no operator action.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../fed_lib.sh"
fm_mode 7.4 "Peer flipped to degraded" "state=degraded"
fed_pair || exit 1
wait_peer_state A b active 10; check "b is active" $?
fed_stop B   # B's platform is down
wait_peer_state A b degraded 8; check "A: b degraded" $?
run on A federation list
fm_seen_text "$RUN_OUT"
expect_out_has 'reason="no heartbeat for' "the list shows why"
grep -q 'msg="federation heartbeat sweep" swept=1 degraded=1' "$A_LOG"
check "the sweep's line counts it" $?
run on A events --source federation_heartbeat_sweep
expect_out_has "state active -> degraded" "an event with source federation_heartbeat_sweep"
run curl -s "$A_HEALTH/metrics"
grep -q '^ztr_federation_peers{state="degraded"} 1$' <<<"$RUN_OUT"
check "ztr_federation_peers{state=\"degraded\"} 1" $?
fed_start B b.example || exit 1
wait_peer_state A b active 10; check "A: b active again once B is back" $?
fed_stop_all
fm_trim
fm_finish
