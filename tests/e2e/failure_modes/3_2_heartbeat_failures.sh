#!/usr/bin/env bash
# Failure mode 3.2: heartbeats stop reaching the controller while the TCP
# stream stays open (the agents are frozen with SIGSTOP). After 3 heartbeat
# intervals (HEARTBEAT_INTERVAL=1500ms; last_seen has a resolution of one
# second) the controller marks the connector and the tunneler OFFLINE:
# `controller node list` and /api/admin/nodes show status=OFFLINE with a
# stale last_seen, the controller's /health counts them offline, an event
# says why. A node that still heartbeats stays ONLINE. After SIGCONT the
# agents reconnect and are ONLINE again.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 3.2 "Heartbeat Failures" "CONNECTOR/TUNNELER shows OFFLINE in UI"
start_controller ctl HEARTBEAT_INTERVAL=1500ms || exit 1
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
keep_agent DC1
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)"
keep_agent LAPTOP
start_agent connector dc2 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc2 --address 127.0.0.1)"
keep_agent DC2
wait_for_state ONLINE 10 "$DC1_URL"; check "connector ONLINE" $?
DC1_NODE=$(json_value node_id)
wait_for_state ONLINE 10 "$LAPTOP_URL"; check "tunneler ONLINE" $?
LAPTOP_NODE=$(json_value node_id)
wait_for_state ONLINE 10 "$DC2_URL"; check "second connector ONLINE" $?
for n in dc1 laptop dc2; do wait_node_status "$n" ONLINE 5; check "admin API: $n ONLINE" $?; done

# last_seen of a node from /api/admin/nodes/ID (Unix seconds).
last_seen() { admin_get "api/admin/nodes/$1" | grep -o '"last_seen":[0-9]*' | cut -d: -f2; }

# ---- heartbeats stop: dc1 and laptop are frozen, dc2 keeps going ----------------------
sleep 1.6   # a heartbeat within the last interval
kill -STOP "$DC1_PID" "$LAPTOP_PID"
stopped_at=$(date +%s)
sleep 0.5
[ "$(node_field dc1 status)" = ONLINE ]; check "still ONLINE within 3 intervals" $?
wait_node_status dc1 OFFLINE 10; check "connector OFFLINE after 3 missed heartbeats" $?
wait_node_status laptop OFFLINE 3; check "tunneler OFFLINE after 3 missed heartbeats" $?
took=$(( $(date +%s) - stopped_at ))
run ctl node list
for who in "dc1 connector $DC1_NODE" "laptop tunneler $LAPTOP_NODE"; do
  read -r name role node <<<"$who"
  line=$(grep -F " name=$name role=$role status=OFFLINE" <<<"$RUN_OUT")
  [ -n "$line" ] && FM_SEEN="${FM_SEEN:+$FM_SEEN ; }$(grep -o 'name=.* last_seen=[^ ]*' <<<"$line")"
  [ -n "$line" ]; check "symptom shown: name=$name role=$role status=OFFLINE in controller node list" $?
  admin_get "api/admin/nodes/$node" | grep -qF '"status":"OFFLINE"'
  check "$role: /api/admin/nodes/$node says OFFLINE" $?
done

# last_seen in the admin API while the nodes are OFFLINE, read at once: the
# controller closes a stream silent for 6 intervals, and then rewrites
# last_seen (see below). It is one thread: a value the admin API returned
# before that node's `node disconnected` line is in its log was read before
# the close; later ones are discarded.
CLOSED='reason="no heartbeat for 6 intervals"'
declare -A samples=()
for ((i = 0; i < 3; i++)); do
  for node in "$DC1_NODE" "$LAPTOP_NODE"; do
    v=$(last_seen "$node")
    grep -qF "msg=\"node disconnected\" node=$node $CLOSED" "$CTL_LOG" && continue
    samples[$node]="${samples[$node]:-} $v"
  done
  sleep 0.3
done
read_at=$(date +%s)
[ "$took" -le 8 ]; check "marked OFFLINE ${took} s after the heartbeats stopped (3 x 1.5 s in whole seconds, swept every interval)" $?
for who in "dc1 $DC1_NODE" "laptop $LAPTOP_NODE"; do
  read -r name node <<<"$who"
  read -ra vals <<<"${samples[$node]:-}"
  ok=1
  if [ "${#vals[@]}" -ge 1 ]; then
    ok=0
    for v in "${vals[@]}"; do [ "$v" = "${vals[0]}" ] && [ "$v" -gt 0 ] && [ "$v" -le "$stopped_at" ] || ok=1; done
  fi
  check "$name: last_seen stale while OFFLINE: the last heartbeat (${vals[*]:-none} <= $stopped_at, read ${#vals[@]} times by $read_at)" $ok
  [ "$name" = dc1 ] && dc1_seen=${vals[0]:-0}
done
[ "$(node_field dc2 status)" = ONLINE ]; check "the node that still heartbeats stays ONLINE" $?
[ "$(last_seen "$(node_field dc2 id)")" -gt "$stopped_at" ]; check "... and its last_seen advances" $?
run curl -s "$HEALTH_URL/health"
expect_out_has '"nodes_online":1' "controller /health: one node online"
run curl -s "$HEALTH_URL/metrics"
expect_out_has 'ztr_controller_nodes{status="offline"} 2' "controller /metrics: two nodes offline"
run ctl events --limit 1000
for node in "$DC1_NODE" "$LAPTOP_NODE"; do
  grep -F "kind=status node=$node " <<<"$RUN_OUT" | tail -1 | grep -qE 'detail="OFFLINE: (.*: )?no heartbeat'
  check "the OFFLINE event of $node says no heartbeat" $?
done
# The controller closes a stream silent for 6 intervals; last_seen stays the
# last time the node was heard from.
wait_for_line "$CTL_LOG" "msg=\"node disconnected\" node=$DC1_NODE $CLOSED" 15
check "the controller closes the silent stream after 6 intervals" $?
after=$(last_seen "$DC1_NODE")
[ "$after" = "$dc1_seen" ]
check "last_seen stays stale when the silent stream is closed ($dc1_seen → $after)" $?
kill -CONT "$DC1_PID" "$LAPTOP_PID"
wait_node_status dc1 ONLINE 10; check "connector ONLINE again once heartbeats flow (SIGCONT)" $?
wait_node_status laptop ONLINE 10; check "tunneler ONLINE again" $?
[ "$(last_seen "$DC1_NODE")" -gt "$stopped_at" ]; check "last_seen moves again" $?
for node in "$DC1_NODE" "$LAPTOP_NODE"; do
  seq=$(status_events "$node")
  [ "$seq" = "ONLINE OFFLINE ONLINE " ]; check "events of $node: ONLINE OFFLINE ONLINE (got: $seq)" $?
done
stop_agent "$DC2_PID"; stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller
fm_finish
