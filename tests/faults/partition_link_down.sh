#!/usr/bin/env bash
# Network partitions (a veth link set down) between a controller, a
# connector and a tunneler, each in a network namespace of its own:
#  - controller <-> tunneler cut: the tunneler's heartbeats stop and the
#    controller's node list shows it OFFLINE after the heartbeat timeout,
#    while its established stream keeps flowing (the data plane does not
#    need the controller); back ONLINE once the link returns;
#  - connector <-> tunneler cut for 1 s (less than the data plane's
#    liveness: DATA_PING_INTERVAL=2s, a PING unanswered at the next one
#    ends the session): the established stream survives;
#  - the same cut for 8 s: the stream ends ("connector does not answer
#    PING"), and new streams work once the link is back;
#  - no descriptor leak in any of the three (fd counts before and after),
#    and each stops cleanly under ASan.
# netem (loss/delay) is not used: this kernel has no sch_netem ("Specified
# qdisc kind is unknown"), so partitions are links down only.
. "$(dirname "$0")/partition_lib.sh"
netns_setup || { [ "$(id -u)" -ne 0 ] && exit 0; echo "  FAIL: cannot set up namespaces" >&2; exit 1; }

ns_controller_start || exit 1
nsenter --net="/run/netns/$NS_CON" -- "$ZTR_TEST_BIN/../tests/tools/tcp_peer" echo 127.0.0.1:0 >"$E2E_TMP/echo.out" 2>&1 &
E2E_PIDS+=($!)
wait_for_line "$E2E_TMP/echo.out" "listening port=" 10 || exit 1
ECHO_PORT="$(sed -n 's/^listening port=//p' "$E2E_TMP/echo.out")"
nctl resource add echo --connector dc1 >/dev/null
DATA_PORT=7500
ns_agent_start connector dc1 "$NS_CON" "$CTL_IP_FOR_CON" \
  ENROLLMENT_TOKEN="$(nctl token create --role connector --name dc1 --address "$CON_IP_DATA")" \
  CONNECTOR_LISTEN="$CON_IP_DATA:$DATA_PORT" RESOURCES="echo=127.0.0.1:$ECHO_PORT" \
  DATA_IDLE_TIMEOUT=6s WORKERS=1
check "connector starts in its namespace" $?
keep_agent DC1
nctl allow --tunneler laptop --resource echo >/dev/null
FWD=7600
ns_agent_start tunneler laptop "$NS_TUN" "$CTL_IP_FOR_TUN" \
  ENROLLMENT_TOKEN="$(nctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=echo" DATA_PING_INTERVAL=2s CONNECTOR_RETRY_MAX=1s WORKERS=1
check "tunneler starts in its namespace" $?
keep_agent LAPTOP

ns_through() { # ns_through [TRIES]: one checked stream through the forward
  local i
  for ((i = 0; i < ${1:-50}; i++)); do
    in_ns "$NS_TUN" "$ZTR_TEST_BIN/../tests/tools/tcp_peer" check "127.0.0.1:$FWD" 1 1K \
      --timeout 5 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
ns_through; check "a stream goes through the relay across the namespaces" $?
wait_node_status laptop ONLINE 10; check "the tunneler is ONLINE" $?
wait_node_status dc1 ONLINE 10; check "the connector is ONLINE" $?
sleep 1   # connections settle (one worker each: one data session, counts comparable)
FD_CTL=$(fd_count "$CTL_PID") FD_CON=$(fd_count "$DC1_PID") FD_TUN=$(fd_count "$LAPTOP_PID")

# stream_start NAME: a long-lived stream through the forward, one echoed
# line every 0.2 s until $E2E_TMP/stop-NAME exists; its progress ("ok N",
# or "ended ..." when the stream broke) in $E2E_TMP/stream-NAME.
stream_start() {
  nsenter --net="/run/netns/$NS_TUN" -- bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || { echo "ended connect"; exit 1; }
    i=0
    while [ ! -e "$2" ]; do
      i=$((i + 1))
      echo "line $i" >&3 2>/dev/null || { echo "ended write $i"; exit 1; }
      IFS= read -r -t 30 got <&3 || { echo "ended read $i"; exit 1; }
      [ "$got" = "line $i" ] || { echo "ended bad $i"; exit 1; }
      echo "ok $i"
      sleep 0.2
    done
    echo done' _ "$FWD" "$E2E_TMP/stop-$1" >"$E2E_TMP/stream-$1" 2>&1 &
  STREAM_PID=$!; E2E_PIDS+=("$STREAM_PID")
  wait_for_line "$E2E_TMP/stream-$1" "ok 2" 10
}
stream_oks() { grep -c '^ok ' "$E2E_TMP/stream-$1"; }

# ---- controller <-> tunneler: heartbeats time out, data keeps flowing ----
stream_start a; check "a long-lived stream is established" $?
STREAM_A=$STREAM_PID
cut_at=$(date +%s%N)
link_down "$NS_CTL" v-ctl-tun
wait_node_status laptop OFFLINE 10; check "the tunneler goes OFFLINE in the controller's node list" $?
offline_ms=$((($(date +%s%N) - cut_at) / 1000000))
echo "  OFFLINE ${offline_ms} ms after the cut (heartbeat 300 ms: 3 intervals + a sweep)"
[ "$offline_ms" -ge 900 ]; check "not before three heartbeat intervals" $?
grep -qF 'reason="no heartbeat' "$CTL_LOG"; check "the controller logs why" $?
[ "$(node_status dc1)" = ONLINE ]; check "the connector stays ONLINE" $?
before=$(stream_oks a); sleep 1
[ "$(stream_oks a)" -gt "$before" ]; check "the established stream keeps flowing without the controller" $?
link_up "$NS_CTL" v-ctl-tun
wait_node_status laptop ONLINE 15; check "the tunneler is ONLINE again once the link is back" $?

# ---- connector <-> tunneler, short: the stream survives -------------------
before=$(stream_oks a)
link_down "$NS_CON" v-con-tun; sleep 1; link_up "$NS_CON" v-con-tun
for _ in $(seq 1 50); do [ "$(stream_oks a)" -gt "$((before + 5))" ] && break; sleep 0.1; done
[ "$(stream_oks a)" -gt "$((before + 5))" ] && ! grep -q '^ended' "$E2E_TMP/stream-a"
check "a 1 s data-plane partition does not break the established stream ($(tail -1 "$E2E_TMP/stream-a"))" $?
: >"$E2E_TMP/stop-a"; wait "$STREAM_A"
check "the stream ends cleanly when its client stops" $?

# ---- connector <-> tunneler, long: the stream ends, then recovers ----------
stream_start b; check "a second long-lived stream is established" $?
STREAM_B=$STREAM_PID
link_down "$NS_CON" v-con-tun
wait_for_line "$LAPTOP_LOG" "connector does not answer PING" 12
check "past the liveness timeout the tunneler ends the data session" $?
wait_for_re "$E2E_TMP/stream-b" '^ended' 10
check "the established stream ends ($(tail -1 "$E2E_TMP/stream-b"))" $?
sleep 2   # 8 s in all
link_up "$NS_CON" v-con-tun
ns_through 50; check "new streams work once the link is back" $?
wait "$STREAM_B" 2>/dev/null

# ---- no leak ----------------------------------------------------------------
ns_through 5
sleep 2   # closed streams and sessions settle
echo "  fds before/after: controller $FD_CTL/$(fd_count "$CTL_PID") connector $FD_CON/$(fd_count "$DC1_PID") tunneler $FD_TUN/$(fd_count "$LAPTOP_PID")"
[ "$(fd_count "$CTL_PID")" -le "$FD_CTL" ]; check "the controller holds no more descriptors than before" $?
[ "$(fd_count "$DC1_PID")" -le "$FD_CON" ]; check "the connector holds no more descriptors than before" $?
[ "$(fd_count "$LAPTOP_PID")" -le "$FD_TUN" ]; check "the tunneler holds no more descriptors than before" $?
for who in LAPTOP DC1; do
  pid_var="${who}_PID"; stop_agent "${!pid_var}"
  [ "$AGENT_STATUS" -eq 0 ]; check "$who stops cleanly (exit $AGENT_STATUS)" $?
done
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "the controller stops cleanly (exit $STOP_STATUS)" $?
! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$CTL_LOG" "$DC1_LOG" "$LAPTOP_LOG"
check "no sanitizer report in any log" $?
finish
