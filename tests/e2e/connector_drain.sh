#!/usr/bin/env bash
# Connector drain: two connectors serve "web"; requests run through the
# tunneler without a pause while connector dc1 is drained, undrained and
# restarted with SIGTERM — not one fails. A transfer on a draining connector
# finishes before the deadline; one that does not is closed at it, with the
# reason in the connector's log. DRAINING shows in `controller node list`
# (and --json), the connector's /health and /metrics, and the state
# survives a controller restart.
. "$(dirname "$0")/lib.sh"
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
start_peer source 64M || exit 1; SOURCE_PORT=$PEER_PORT
ctl resource add web --connector dc1 --connector dc2 >/dev/null
# "bulk" only on dc1: its transfers ride dc1 whatever the tunneler picks.
ctl resource add bulk --connector dc1 >/dev/null
RES="web=127.0.0.1:$HTTP_PORT,bulk=127.0.0.1:$SOURCE_PORT"
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="$RES" DRAIN_TIMEOUT=8s
keep_agent DC1; DC1_ENV=("${AGENT_ENV[@]}")
start_agent connector dc2 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc2 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT"
keep_agent DC2
for r in web bulk; do ctl allow --tunneler laptop --resource "$r" >/dev/null; done
FWD_WEB=$(free_port); FWD_BULK=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD_WEB=web,127.0.0.1:$FWD_BULK=bulk" CONNECTOR_RETRY_MIN=200ms \
  CONNECTOR_RETRY_MAX=400ms
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'connectors=2' 10
check "the tunneler learns both connectors" $?
for ((i = 0; i < 100; i++)); do
  [ "$(curl -s -m 5 "http://127.0.0.1:$FWD_WEB/")" = "hello from resource" ] && break; sleep 0.1
done
[ "$i" -lt 100 ]; check "web answers through the tunneler" $?
DC1_ID=$(ctl node list --json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["name"]=="dc1"][0])')

# Requests without a pause, each counted: ok or failed.
LOOP_OK="$E2E_TMP/loop.ok"; LOOP_FAILED="$E2E_TMP/loop.failed"; LOOP_STOP="$E2E_TMP/loop.stop"
: >"$LOOP_OK"; : >"$LOOP_FAILED"
(
  while [ ! -e "$LOOP_STOP" ]; do
    if [ "$(curl -s -m 5 "http://127.0.0.1:$FWD_WEB/")" = "hello from resource" ]; then
      echo >>"$LOOP_OK"
    else
      date +%T.%N >>"$LOOP_FAILED"
    fi
  done
) &
LOOP_PID=$!; E2E_PIDS+=("$LOOP_PID")
loop_ok() { wc -l <"$LOOP_OK"; }
# wait_drain URL STATE: polls URL/health until its "drain" says STATE.
wait_drain() {
  local i
  for ((i = 0; i < 100; i++)); do
    health "$1"
    [ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["drain"]["state"])' "$HEALTH_BODY" 2>/dev/null)" = "$2" ] && return 0
    sleep 0.05
  done
  return 1
}
# wait_requests N: N more requests succeed.
wait_requests() {
  local target=$(($(loop_ok) + $1)) i
  for ((i = 0; i < 400; i++)); do [ "$(loop_ok)" -ge "$target" ] && return 0; sleep 0.05; done
  return 1
}
wait_requests 20; check "the request loop runs" $?
health "$DC1_URL"; before=$(json_value streams_total)
[ "${before:-0}" -gt 0 ]; check "dc1 serves part of the requests ($before streams)" $?

# ---- drain --------------------------------------------------------------------------------
run ctl node drain dc1 --deadline 10m
expect_status 0 "controller node drain dc1"
expect_out_has "state=draining" "drain answers with the state"
expect_err_has "no other connector serves resource bulk" "drain warns about a resource only dc1 serves"
wait_drain "$DC1_URL" DRAINING
[[ "$HEALTH_BODY" == *'"drain":{'*'"state":"DRAINING"'* ]]
check "dc1 /health: drain state DRAINING" $?
[[ "$HEALTH_BODY" == *'"by":"operator"'* ]]; check "dc1 /health: drained by the operator" $?
metric_at_least "$DC1_URL" ztr_connector_draining 1; check "dc1 /metrics: ztr_connector_draining 1" $?
metrics=$(curl -s "$DC1_URL/metrics")
grep -q '^ztr_connector_drain_streams_left 0$' <<<"$metrics"
check "dc1 /metrics: ztr_connector_drain_streams_left 0" $?
for ((i = 0; i < 100; i++)); do
  health "$LAPTOP_URL"; [[ "$HEALTH_BODY" == *'"draining":true'* ]] && break; sleep 0.05
done
[[ "$HEALTH_BODY" == *'"draining":true'* ]]; check "the tunneler's list marks dc1 draining" $?
run ctl node list
grep "name=dc1 " <<<"$RUN_OUT" | grep -q "status=DRAINING"
check "controller node list: dc1 status=DRAINING" $?
run ctl node list --json
python3 -c 'import json,sys; n=[n for n in json.load(sys.stdin)["nodes"] if n["name"]=="dc1"][0]; sys.exit(not (n["status"]=="DRAINING" and n["drain"]["by"]=="operator" and n["drain"]["deadline"]>0))' <<<"$RUN_OUT"
check "controller node list --json: status DRAINING and the drain object" $?
run ctl fleet
grep "name=dc1 " <<<"$RUN_OUT" | grep -q "flags=draining"
check "controller fleet: dc1 flags=draining" $?
run ctl fleet --json
python3 -c 'import json,sys; n=[n for n in json.load(sys.stdin)["nodes"] if n["name"]=="dc1"][0]; sys.exit(not ("draining" in n["flags"] and n["drain"]["by"]=="operator"))' <<<"$RUN_OUT"
check "controller fleet --json: the draining flag and the drain object" $?
metric_at_least "$HEALTH_URL" ztr_controller_connectors_draining 1
check "controller /metrics: ztr_controller_connectors_draining 1" $?
wait_requests 10
health "$DC1_URL"; during=$(json_value streams_total)
wait_requests 30; check "requests keep succeeding while dc1 drains" $?
health "$DC1_URL"; after=$(json_value streams_total)
[ "$after" -eq "$during" ]; check "no new stream reaches the draining dc1 ($during -> $after)" $?
run curl -s -m 5 "http://127.0.0.1:$FWD_BULK/"
[ "$RUN_STATUS" -ne 0 ]; check "bulk (dc1 alone) gets no new stream while dc1 drains" $?
grep -q 'reason="connector dc1 refused the stream: connector draining"\|connector draining' "$LAPTOP_LOG"
check "the tunneler logs the drain as the reason" $?

# The drain survives a controller restart (stored), and reaches dc1 again.
stop_controller
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
run ctl node list --json
python3 -c 'import json,sys; n=[n for n in json.load(sys.stdin)["nodes"] if n["name"]=="dc1"][0]; sys.exit(n["drain"] is None)' <<<"$RUN_OUT"
check "the drain survives a controller restart" $?
wait_requests 20; check "requests succeed across the controller restart" $?

# ---- undrain ------------------------------------------------------------------------------
run ctl node undrain dc1
expect_status 0 "controller node undrain dc1"
wait_drain "$DC1_URL" SERVING
[[ "$HEALTH_BODY" == *'"drain":{"state":"SERVING"}'* ]]; check "dc1 /health: SERVING again" $?
back=0
for ((i = 0; i < 100; i++)); do
  health "$DC1_URL"; [ "$(json_value streams_total)" -gt "$after" ] && { back=1; break; }; sleep 0.05
done
[ "$back" -eq 1 ]; check "dc1 takes new streams after undrain" $?

# ---- a transfer on a draining connector finishes before the deadline ----------------------
tcp_peer read "127.0.0.1:$FWD_BULK" 3M 1M >"$E2E_TMP/long1" 2>&1 &
T1=$!
sleep 0.5
run ctl node drain "$DC1_ID" --deadline 30s
expect_status 0 "drain by node id"
wait "$T1"; t1_status=$?
[ "$t1_status" -eq 0 ] && grep -q "ok bytes=3145728" "$E2E_TMP/long1"
check "a 3 s transfer on the draining dc1 completes ($(cat "$E2E_TMP/long1"))" $?

# ---- one that outlives the deadline is closed at it, with the reason logged -------------
run ctl node undrain dc1
wait_drain "$DC1_URL" SERVING
tcp_peer read "127.0.0.1:$FWD_BULK" 20M 1M >"$E2E_TMP/long2" 2>&1 &
T2=$!
sleep 0.5
run ctl node drain dc1 --deadline 2s
wait "$T2"; t2_status=$?
[ "$t2_status" -ne 0 ]; check "a 20 s transfer is closed at the 2 s deadline ($(cat "$E2E_TMP/long2"))" $?
grep -q 'msg="stream closed at the drain deadline".*reason="connector drained: deadline reached"' "$DC1_LOG"
check "dc1 logs the stream it closed at the deadline, with the reason" $?
# Logged by the agent's loop after the workers closed the streams: the
# client may see its stream end first.
wait_for_line "$DC1_LOG" 'msg="drain deadline reached, streams closed" streams=1' 5
check "dc1 logs how many streams the deadline closed" $?
run ctl node undrain dc1
wait_drain "$DC1_URL" SERVING

# ---- SIGTERM drains first: a transfer finishes, then dc1 exits 0 -------------------------
tcp_peer read "127.0.0.1:$FWD_BULK" 2M 1M >"$E2E_TMP/long3" 2>&1 &
T3=$!
sleep 0.5
start_ms=$(date +%s%3N)
kill -TERM "$DC1_PID"
wait "$T3"; t3_status=$?
wait "$DC1_PID"; dc1_status=$?
stop_ms=$(date +%s%3N)
[ "$t3_status" -eq 0 ] && grep -q "ok bytes=2097152" "$E2E_TMP/long3"
check "a transfer in flight when SIGTERM arrives completes ($(cat "$E2E_TMP/long3"))" $?
[ "$dc1_status" -eq 0 ]; check "dc1 exits 0 after draining (exit $dc1_status)" $?
[ $((stop_ms - start_ms)) -ge 1000 ]; check "dc1 waited for the transfer ($((stop_ms - start_ms)) ms)" $?
grep -q 'msg="stopping: draining first" drain_timeout_ms=8000 controller_told=true' "$DC1_LOG"
check "dc1 logs the drain before it stops, and told the controller" $?
grep -q 'msg="connector draining before it stops".*name=dc1' "$CTL_LOG"
check "the controller records dc1's own drain" $?
wait_requests 20; check "requests succeed while dc1 is down" $?
env "${DC1_ENV[@]}" "$ZTR_TEST_BIN/connector" >>"$DC1_LOG" 2>&1 &
DC1_PID=$!; E2E_PIDS+=("$DC1_PID")
for ((i = 0; i < 200; i++)); do
  [ "$(count_lines "$DC1_LOG" 'msg="agent started"')" -ge 2 ] && break; sleep 0.05
done
DC1_URL="http://127.0.0.1:$(grep -F 'msg="agent started"' "$DC1_LOG" | tail -1 | tr ' ' '\n' |
  sed -n 's/^health_port=//p')"
back=0
for ((i = 0; i < 200; i++)); do
  health "$DC1_URL"; [ "$(json_value streams_total)" -gt 0 ] 2>/dev/null && { back=1; break; }; sleep 0.05
done
[ "$back" -eq 1 ]; check "the restarted dc1 takes new streams (its own drain ended)" $?
run ctl node list
grep "name=dc1 " <<<"$RUN_OUT" | grep -q "status=ONLINE"
check "controller node list: dc1 ONLINE again" $?

# ---- SIGTERM with nothing open: out at once --------------------------------------------
start_ms=$(date +%s%3N)
wait_requests 5
stop_agent "$DC1_PID"; stop_ms=$(date +%s%3N)
[ "$AGENT_STATUS" -eq 0 ] && [ $((stop_ms - start_ms)) -lt 6000 ]
check "SIGTERM with no long stream: exit 0 well before DRAIN_TIMEOUT ($((stop_ms - start_ms)) ms)" $?
env "${DC1_ENV[@]}" "$ZTR_TEST_BIN/connector" >>"$DC1_LOG" 2>&1 &
DC1_PID=$!; E2E_PIDS+=("$DC1_PID")
wait_requests 20

touch "$LOOP_STOP"; wait "$LOOP_PID"
failed=$(wc -l <"$LOOP_FAILED"); total=$(($(loop_ok) + failed))
echo "  request loop: $total requests, $failed failed"
[ "$failed" -eq 0 ]; check "0 failed requests of $total through drain, undrain and restarts" $?
[ "$failed" -eq 0 ] || cat "$LOOP_FAILED" >&2
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"; stop_agent "$DC2_PID"
finish
