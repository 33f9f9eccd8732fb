#!/usr/bin/env bash
# The reconnect worker against a controller that dies (SIGKILL) and comes
# back on the same port: /health 503 RECONNECTING with rising
# telemetry.reconnect.scheduled, full-jitter delays within their doubling
# ceilings, `retry budget exhausted` → controller.link "disconnected", ONLINE
# again after the restart with `control-plane stream connected` once per
# connection, OFFLINE then ONLINE in the controller's events, and SIGHUP
# retrying at once instead of waiting out a long delay.
. "$(dirname "$0")/lib.sh"
start_controller ctl || exit 1
CTL_PORT=${CTL_ADDR##*:}
CTL_LOG1=$CTL_LOG

# fast: 100 ms → 400 ms, 4 attempts. parked: its budget (2) is spent at
# once, then it would wait 30 s between attempts.
start_agent tunneler fast ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name fast)" \
  RECONNECT_MIN_DELAY=100ms RECONNECT_MAX_DELAY=400ms RECONNECT_ATTEMPTS=4
check "fast agent starts" $?
F_PID=$AGENT_PID F_URL=$AGENT_HEALTH_URL F_LOG=$AGENT_LOG
start_agent connector parked ENROLLMENT_TOKEN="$(ctl token create --role connector --name parked --address 127.0.0.1)" \
  RECONNECT_MIN_DELAY=100ms RECONNECT_MAX_DELAY=30s RECONNECT_ATTEMPTS=2
check "parked agent starts" $?
P_PID=$AGENT_PID P_URL=$AGENT_HEALTH_URL P_LOG=$AGENT_LOG
wait_for_state ONLINE 15 "$F_URL"; check "fast agent ONLINE" $?
F_NODE=$(json_value node_id)
[ "$(json_value telemetry.reconnect.scheduled)" = 0 ]; check "no reconnect scheduled yet" $?
wait_for_state ONLINE 15 "$P_URL"; check "parked agent ONLINE" $?
P_NODE=$(json_value node_id)

# SIGHUP while ONLINE changes nothing.
kill -HUP "$F_PID"
wait_for_line "$F_LOG" 'msg="SIGHUP: retrying the controller now" state=ONLINE' 5
check "SIGHUP is logged" $?
health "$F_URL"
[ "$(json_value state)" = ONLINE ] && [ "$(count_lines "$F_LOG" 'msg="control-plane stream connected"')" -eq 1 ]
check "SIGHUP while ONLINE keeps the stream" $?

# ---- the controller dies --------------------------------------------------------
kill -KILL "$CTL_PID"; wait "$CTL_PID" 2>/dev/null
wait_for_line "$F_LOG" 'msg="control-plane stream lost"' 5
check "agent notices the lost stream" $?
health "$F_URL"
[ "$HEALTH_CODE" = 503 ]; check "/health 503 without a controller (got $HEALTH_CODE)" $?
[ "$(json_value state)" = RECONNECTING ]; check "/health state RECONNECTING" $?
[ "$(json_value connected)" = false ]; check "/health connected=false" $?
s1=$(json_value telemetry.reconnect.scheduled)
sleep 0.5
health "$F_URL"
s2=$(json_value telemetry.reconnect.scheduled)
[ "${s1:-0}" -ge 1 ] && [ "${s2:-0}" -gt "$s1" ]
check "telemetry.reconnect.scheduled rises ($s1 → $s2)" $?
grep -qF '"telemetry":{"reconnect":{"scheduled":'"$s2" <<<"$HEALTH_BODY"
check "the nested telemetry tree carries the same counter" $?

wait_for_line "$F_LOG" 'msg="controller unreachable: retry budget exhausted" attempts=4' 10
check "retry budget exhausted after RECONNECT_ATTEMPTS=4" $?
sleep 0.2
health "$F_URL"
[ "$(json_value link)" = disconnected ]; ok=$?
check "/health controller.link disconnected, not stale (got $(json_value link))" $ok
[ "$(json_value telemetry.reconnect.failed)" = 1 ]; check "telemetry.reconnect.failed=1" $?
[ "$HEALTH_CODE" = 503 ] && [ "$(json_value state)" = RECONNECTING ]; check "still RECONNECTING, 503" $?
run curl -s "$F_URL/metrics"
expect_out_has 'ztr_agent_reconnect_failed_total{role="tunneler"} 1' "/metrics: budget exhaustion counted"
expect_out_has 'ztr_agent_connected{role="tunneler"} 0' "/metrics: not connected"

# The delays: full jitter in [0, ceiling], ceiling 100 ms doubling to the
# 400 ms cap; once the budget is spent, every RECONNECT_MAX_DELAY.
delays=$(awk '/msg="control-plane stream lost"/ {on = 1}
  on && /msg="reconnect scheduled"/ {
    for (i = 1; i <= NF; i++) { if ($i ~ /^in_ms=/) d = substr($i, 7); if ($i ~ /^attempt=/) a = substr($i, 9) }
    print (spent ? "after" : "before"), a, d }
  on && /retry budget exhausted/ {spent = 1}' "$F_LOG")
before=$(grep -c '^before' <<<"$delays")
[ "$before" -eq 4 ]; check "4 jittered delays before the budget ran out (got $before)" $?
bad=$(awk '$1 == "before" { c = 100 * 2 ^ ($2 - 1); if (c > 400) c = 400; if ($3 < 0 || $3 > c || $2 != NR) print }' <<<"$delays")
[ -z "$bad" ]; check "each delay within 0..ceiling, ceilings 100/200/400/400 ms [$bad]" $?
after=$(grep '^after' <<<"$delays")
[ -n "$after" ] && ! grep -qv ' 400$' <<<"$after"; check "after the budget: every 400 ms (RECONNECT_MAX_DELAY)" $?

# parked: budget of 2 spent, now waiting 30 s.
wait_for_line "$P_LOG" 'msg="controller unreachable: retry budget exhausted" attempts=2' 10
check "parked agent spends its budget" $?
wait_for_line "$P_LOG" 'msg="reconnect scheduled" in_ms=30000' 5
check "parked agent waits RECONNECT_MAX_DELAY=30s" $?

# ---- the controller comes back on the same port ---------------------------------
start_controller ctl CONTROLLER_LISTEN="127.0.0.1:$CTL_PORT"
check "controller restarts on the same port" $?
[ "$CTL_ADDR" = "127.0.0.1:$CTL_PORT" ]; check "same control address" $?
wait_for_state ONLINE 5 "$F_URL"; check "fast agent ONLINE again" $?
[ "$HEALTH_CODE" = 200 ] && [ "$(json_value link)" = connected ]; check "/health 200, link connected" $?
[ "$(json_value node_id)" = "$F_NODE" ]; check "same node after reconnecting" $?
connects=$(count_lines "$F_LOG" 'msg="control-plane stream connected"')
welcomes=$(count_lines "$F_LOG" 'to=ONLINE reason="welcome"')
sessions=$(count_lines "$CTL_LOG1" "$CTL_LOG" "msg=\"node connected\" node=$F_NODE ")
[ "$connects" -eq 2 ] && [ "$welcomes" -eq 2 ] && [ "$sessions" -eq 2 ]
check "control-plane stream connected once per connection (agent $connects, welcomes $welcomes, controller sessions $sessions)" $?
! grep -qF 'state change refused' "$F_LOG"; check "no refused state change" $?

# The parked agent is still waiting; the restarted controller marked it
# OFFLINE (no session survives a restart).
run ctl node list
expect_out_has "id=$P_NODE name=parked role=connector status=OFFLINE" "controller marks the silent node OFFLINE"
health "$P_URL"
[ "$(json_value state)" = RECONNECTING ] && [ "$(json_value link)" = disconnected ]
ok=$?
check "parked agent still waiting (state $(json_value state), link $(json_value link))" $ok
run ctl node list
expect_out_has "id=$P_NODE name=parked role=connector status=OFFLINE" "node list: parked OFFLINE"

# SIGHUP: retry now.
hup_at=$(date +%s%N)
kill -HUP "$P_PID"
wait_for_state ONLINE 3 "$P_URL"
check "SIGHUP: the waiting agent reconnects at once" $?
took=$((($(date +%s%N) - hup_at) / 1000000))
[ "$took" -lt 2000 ]; check "reconnected ${took} ms after SIGHUP (< 2 s; the pending delay was 30 s)" $?
grep -qF 'msg="SIGHUP: retrying the controller now" state=RECONNECTING' "$P_LOG"
check "SIGHUP logged while RECONNECTING" $?
[ "$(count_lines "$P_LOG" 'msg="control-plane stream connected"')" -eq 2 ]
check "parked agent: two connections, two stream connected lines" $?
run ctl node list
expect_out_has "id=$P_NODE name=parked role=connector status=ONLINE" "node list: parked ONLINE again"

# The controller's events for the parked node: ONLINE, OFFLINE, ONLINE.
run ctl events
seq=$(grep -F "kind=status node=$P_NODE " <<<"$RUN_OUT" | sed -n 's/.*detail="\([A-Z]*\).*/\1/p' | tr '\n' ' ')
[ "$seq" = "ONLINE OFFLINE ONLINE " ]; check "controller events: ONLINE, OFFLINE, ONLINE (got: $seq)" $?
expect_out_has "node=$P_NODE detail=\"OFFLINE: controller restarted\"" "OFFLINE event says why"

stop_agent "$F_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "fast agent exits 0" $?
stop_agent "$P_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "parked agent exits 0" $?
stop_controller
finish
