#!/usr/bin/env bash
# A slow disk: fsync delayed 2 s (the injector's delay:2000) on the
# controller's store, then on a connector's state directory, while /health
# is sampled. Numbers go to stdout (bench/RESULTS.md "Faults: slow disk");
# the assertions are generous:
#  - the controller's loop is not blocked by the store's fsync: with
#    SQLite in WAL mode and synchronous=NORMAL a commit does not fsync, and
#    checkpoints (which do) run on a thread of their own, so /health
#    answers within 1 s throughout the admin changes, and heartbeats keep
#    the nodes ONLINE;
#  - a connector writes its allowlist (file, then directory: two fsyncs)
#    on its event loop: while its disk is slow each push blocks it ~4 s,
#    a measured limitation (docs/OPERATIONS.md), and its data-plane
#    workers go on serving streams meanwhile; once the disk is fast again
#    it is ONLINE without a restart.
# ZTR_FAULTS_SLOW=1 makes it 600 changes instead of 30: enough WAL frames
# (1000) for checkpoints, which before they moved off the loop blocked it
# for 6 s at a time here.
. "$(dirname "$0")/fault_lib.sh"
SLOW="$E2E_TMP/slow"
: >"$SLOW"
fault_env fsync delay:2000 controller.db 1 0 "$SLOW"
# Heartbeats every 2 s: three missed (6 s) outlast a connector's 4 s
# blocked save, which with 300 ms ones would cost it its session, and the
# reconnect's push another save, over and over.
start_controller ctl HEARTBEAT_INTERVAL=2s "${FAULT_ENV[@]}" || exit 1
CTL_TRACE=$FAULT_TRACE
start_peer echo || exit 1
fault_env fsync delay:2000 "$E2E_TMP/agent-dc1" 1 0 "$E2E_TMP/slow-dc1"
DC1_TRACE=$FAULT_TRACE
relay_pair echo "${FAULT_ENV[@]}" || exit 1

# sample URL COUNT: COUNT /health requests 50 ms apart; prints "n p50_ms max_ms".
sample() {
  for _ in $(seq 1 "$2"); do
    curl -s -o /dev/null -m 15 -w '%{time_total}\n' "$1/health"; sleep 0.05
  done | sort -n | awk '{a[NR] = $1 * 1000} END {printf "%d %.1f %.1f\n", NR, a[int(NR / 2) + 1], a[NR]}'
}
max_of() { awk '{printf "%d", $3}' <<<"$1"; }

# ---- the controller's store ---------------------------------------------------
idle="$(sample "$HEALTH_URL" 20)"
fsyncs_before=$(fault_count_of "$CTL_TRACE")
changes=30
[ "${ZTR_FAULTS_SLOW:-0}" = 1 ] && changes=600
( for i in $(seq 1 "$changes"); do
    ctl allow --tunneler "t$i" --resource echo >/dev/null
  done ) &
WORKLOAD=$!
busy="$(sample "$HEALTH_URL" 40)"
busy_max=$(max_of "$busy")
while kill -0 "$WORKLOAD" 2>/dev/null; do
  more="$(sample "$HEALTH_URL" 10)"
  [ "$(max_of "$more")" -gt "$busy_max" ] && busy_max=$(max_of "$more")
done
wait "$WORKLOAD"
fsyncs=$(($(fault_count_of "$CTL_TRACE") - fsyncs_before))
echo "  controller /health (n p50_ms max_ms): idle [$idle] during $changes changes [$busy] max ${busy_max} ms; store fsyncs during them: $fsyncs (each delayed 2 s, on the checkpoint thread)"
[ "$busy_max" -lt 1000 ]; check "the controller's /health answers within 1 s while the store's fsync takes 2 s" $?
run ctl node list
[ "$(grep -c ONLINE <<<"$RUN_OUT")" -eq 2 ]; check "both nodes stay ONLINE" $?
rm -f "$SLOW"

# ---- a connector's state directory -----------------------------------------------
: >"$E2E_TMP/slow-dc1"
t0=$(date +%s%N)
ctl allow --tunneler phone --resource echo >/dev/null   # one push: the connector saves its allowlist
conn="$(sample "$DC1_URL" 5)"
wait_through "127.0.0.1:$FWD" 10; check "the connector's workers serve streams while its loop waits on the disk" $?
saves=$(grep -c 'allowlist.json' "$DC1_TRACE")
echo "  connector /health (n p50_ms max_ms) after a push with fsync delayed 2 s: [$conn]; allowlist fsyncs so far: $saves"
rm -f "$E2E_TMP/slow-dc1"
wait_for_state ONLINE 20 "$DC1_URL"; check "once its disk is fast again the connector is ONLINE" $?
run ctl node list
for _ in $(seq 1 100); do grep -q 'name=dc1 .*status=ONLINE' <<<"$RUN_OUT" && break; sleep 0.1; run ctl node list; done
grep -q 'name=dc1 .*status=ONLINE' <<<"$RUN_OUT"; check "and ONLINE in the controller's list" $?
wait_through "127.0.0.1:$FWD" 50; check "streams go through again" $?
echo "  total $((($(date +%s%N) - t0) / 1000000)) ms for the connector part"
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "the controller stops cleanly" $?
finish
