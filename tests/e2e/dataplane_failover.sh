#!/usr/bin/env bash
# Two connectors serve the same resources. The tunneler spreads streams over
# both (least active streams), fails over when one is killed (marking it down
# with backoff), and uses it again once it is back.
. "$(dirname "$0")/lib.sh"
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
for r in web echo; do ctl resource add "$r" --connector dc1 --connector dc2 >/dev/null; done
RES="web=127.0.0.1:$HTTP_PORT,echo=127.0.0.1:$ECHO_PORT"
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="$RES"
keep_agent DC1; DC1_ENV=("${AGENT_ENV[@]}")
start_agent connector dc2 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc2 --address 127.0.0.1)" \
  RESOURCES="$RES"
keep_agent DC2
for r in web echo; do ctl allow --tunneler laptop --resource "$r" >/dev/null; done
FWD_WEB=$(free_port); FWD_ECHO=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD_WEB=web,127.0.0.1:$FWD_ECHO=echo" SOCKS5_LISTEN=off \
  CONNECTOR_RETRY_MIN=200ms CONNECTOR_RETRY_MAX=400ms
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'connectors=2' 10
check "the tunneler learns both connectors" $?

run tcp_peer check "127.0.0.1:$FWD_ECHO" 40 65536
expect_out_has "ok streams=40" "40 parallel streams"
health "$DC1_URL"; n1=$(json_value streams_total)
health "$DC2_URL"; n2=$(json_value streams_total)
[ "$n1" -ge 10 ] && [ "$n2" -ge 10 ]
check "streams are spread over both connectors ($n1 / $n2)" $?

# ---- one connector dies ----------------------------------------------------------------
kill -KILL "$DC1_PID"; wait "$DC1_PID" 2>/dev/null
ok=0
for i in $(seq 1 20); do
  [ "$(curl -s -m 5 "http://127.0.0.1:$FWD_WEB/")" = "hello from resource" ] && ok=$((ok + 1))
done
[ "$ok" -eq 20 ]; check "every request succeeds after dc1 is killed ($ok/20)" $?
run tcp_peer check "127.0.0.1:$FWD_ECHO" 20 65536
expect_out_has "ok streams=20" "parallel streams go to the surviving connector"
grep -qF 'msg="connector marked down"' "$LAPTOP_LOG"
check "the dead connector is marked down" $?
grep -qF 'msg="stream failing over"' "$LAPTOP_LOG" || grep -qF 'connection refused' "$LAPTOP_LOG"
check "the tunneler logs why it moved on" $?
health "$LAPTOP_URL"
[[ "$HEALTH_BODY" == *'"last_error":"dial 127.0.0.1:'*': connect: connection refused"'* ]]
check "/health shows why the connector was marked down" $?

# ---- it comes back ----------------------------------------------------------------------
env "${DC1_ENV[@]}" "$ZTR_TEST_BIN/connector" >>"$DC1_LOG" 2>&1 &
DC1_PID=$!; E2E_PIDS+=("$DC1_PID")
for ((i = 0; i < 200; i++)); do
  [ "$(count_lines "$DC1_LOG" 'msg="agent started"')" -ge 2 ] && break; sleep 0.05
done
DC1_URL="http://127.0.0.1:$(grep -F 'msg="agent started"' "$DC1_LOG" | tail -1 | tr ' ' '\n' |
  sed -n 's/^health_port=//p')"
before=0
back=0
for i in $(seq 1 50); do
  tcp_peer check "127.0.0.1:$FWD_ECHO" 4 1024 >/dev/null 2>&1
  health "$DC1_URL"
  [ "$(json_value streams_total)" -gt "${before:-0}" ] && { back=1; break; }
  sleep 0.1
done
[ "$back" -eq 1 ]; check "the recovered connector carries streams again" $?
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"; stop_agent "$DC2_PID"
finish
