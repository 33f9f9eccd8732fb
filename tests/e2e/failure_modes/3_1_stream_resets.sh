#!/usr/bin/env bash
# Failure mode 3.1: the control-plane stream resets when the controller
# restarts (cleanly, then killed). The agent reconnects on its own and logs
# `control-plane stream connected` once per connection — repeated lines —
# and the admin API shows the flap: OFFLINE while it is away, ONLINE again,
# with ONLINE/OFFLINE/ONLINE/OFFLINE/ONLINE in the controller's events. A
# certificate renewal, by contrast, keeps the same stream (see 4.1).
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 3.1 "Control Plane Stream Resets" "repeated control-plane stream connected logs"
CONNECTED='msg="control-plane stream connected"'
start_controller ctl || exit 1
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RECONNECT_MIN_DELAY=100ms RECONNECT_MAX_DELAY=300ms
check "connector starts" $?
wait_for_state ONLINE 10; check "connector ONLINE" $?
NODE=$(json_value node_id)
[ "$(count_lines "$AGENT_LOG" "$CONNECTED")" -eq 1 ]; check "one stream connected line at first" $?
wait_node_status dc1 ONLINE 5; check "admin API: dc1 ONLINE" $?

# ---- reset 1: the controller restarts cleanly (SIGTERM) --------------------------
# The agent is paused across the restart, so the restarted controller is
# seen with the node OFFLINE before the agent comes back.
kill -STOP "$AGENT_PID"
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller stops cleanly" $?
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_node_status dc1 OFFLINE 5; check "admin API: dc1 OFFLINE while its stream is down" $?
off_seen=$(admin_get api/admin/nodes | grep -o '"name":"dc1","role":"connector"[^}]*"status":"OFFLINE"')
[ -n "$off_seen" ]; check "/api/admin/nodes: status OFFLINE" $?
kill -CONT "$AGENT_PID"
wait_for_line "$AGENT_LOG" 'msg="control-plane stream lost"' 5; check "the agent notices the reset" $?
wait_node_status dc1 ONLINE 10; check "admin API: dc1 ONLINE again after the reconnect" $?
[ "$(count_lines "$AGENT_LOG" "$CONNECTED")" -eq 2 ]; check "a second stream connected line" $?

# ---- reset 2: the controller is killed and comes back on the same port -----------
kill -KILL "$CTL_PID"; wait "$CTL_PID" 2>/dev/null
wait_for_state RECONNECTING 5; check "agent RECONNECTING while the controller is down (/health $HEALTH_CODE)" $?
[ "$HEALTH_CODE" = 503 ]; check "/health 503 while the stream is down" $?
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_state ONLINE 10; check "agent ONLINE again" $?
[ "$(json_value node_id)" = "$NODE" ]; check "same node after both resets" $?
wait_node_status dc1 ONLINE 5; check "admin API: dc1 ONLINE" $?
[ "$(count_lines "$AGENT_LOG" "$CONNECTED")" -eq 3 ]; check "three stream connected lines for three connections" $?
fm_seen "$AGENT_LOG" "$CONNECTED"
fm_trim
FM_SEEN="$FM_SEEN (x$(count_lines "$AGENT_LOG" "$CONNECTED"))"

# The flap in the controller's events.
seq=$(status_events "$NODE")
[ "$seq" = "ONLINE OFFLINE ONLINE OFFLINE ONLINE " ]
check "events: ONLINE OFFLINE ONLINE OFFLINE ONLINE (got: $seq)" $?
run ctl events --limit 1000
expect_out_has "node=$NODE detail=\"OFFLINE: control stream closed: controller shutting down\"" "event: OFFLINE on the clean stop"
expect_out_has "node=$NODE detail=\"OFFLINE: controller restarted\"" "event: OFFLINE after the kill"
[ "$(count_lines "$AGENT_LOG" 'msg="enrolled"')" -eq 1 ]
check "no re-enrollment: the agent reconnects with its certificate" $?
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "connector exits 0" $?
stop_controller
fm_finish
