#!/usr/bin/env bash
# Attack: a tunneler spreads its streams over the connector's worker loops
# (WORKERS) to hold more than STREAMS_PER_TUNNELER: were each loop to count
# only the sessions it holds, one tunneler would get WORKERS times its
# quota. The quota is one count per tunneler over every loop of the
# connector: with streams held on both loops, the one beyond it is refused.
. "$(dirname "$0")/../e2e/lib.sh"
QUOTA=6
start_controller ctl || exit 1
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
ctl resource add echo --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="echo=127.0.0.1:$ECHO_PORT" STREAMS_PER_TUNNELER=$QUOTA WORKERS=2
check "connector starts with WORKERS=2 and STREAMS_PER_TUNNELER=$QUOTA" $?
keep_agent DC1
health "$DC1_URL"
[ "$(json_value workers)" = 2 ]; check "the connector runs two data-plane loops" $?
ctl allow --tunneler laptop --resource echo >/dev/null
FWD=$(free_port)
TOKEN="$(ctl token create --role tunneler --name laptop)"

# worker_streams of the connector's /health: "a,b".
loop_streams() { health "$DC1_URL"; grep -o '"worker_streams":\[[^]]*\]' <<<"$HEALTH_BODY" | sed 's/.*\[\(.*\)\]/\1/'; }

# The kernel spreads sessions over the loops (SO_REUSEPORT): the tunneler
# (16 loops, a session each) holds streams one by one up to the quota
# until both connector loops carry some; a new tunneler start is a new
# draw.
spread=no
for attempt in 1 2 3 4 5; do
  if [ "$attempt" -eq 1 ]; then
    start_agent tunneler laptop ENROLLMENT_TOKEN="$TOKEN" FORWARDS="127.0.0.1:$FWD=echo" WORKERS=16 CLIENT_STREAMS_MAX=100
  else
    start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=echo" WORKERS=16 CLIENT_STREAMS_MAX=100
  fi
  LAPTOP_PID=$AGENT_PID
  wait_for_line "$AGENT_LOG" 'msg="connector list received"' 10
  HOLDS=()
  for i in $(seq 1 $QUOTA); do
    # The binary itself, not the tcp_peer function: kill must reach it.
    "$ZTR_TEST_BIN/../tests/tools/tcp_peer" hold "127.0.0.1:$FWD" 1 60 >"$E2E_TMP/hold.$attempt.$i" 2>&1 &
    HOLDS+=($!)
    for _ in $(seq 1 100); do health "$DC1_URL"; [ "$(json_value streams)" = "$i" ] && break; sleep 0.05; done
  done
  per_loop="$(loop_streams)"
  if [ "$(json_value streams)" = $QUOTA ] && [ "${per_loop%,*}" -gt 0 ] && [ "${per_loop#*,}" -gt 0 ]; then
    spread=yes; break
  fi
  kill "${HOLDS[@]}" 2>/dev/null; wait "${HOLDS[@]}" 2>/dev/null
  stop_agent "$LAPTOP_PID"
done
[ "$spread" = yes ]; check "the tunneler holds $QUOTA streams over both connector loops ($per_loop, attempt $attempt)" $?

for i in 1 2 3 4; do
  run tcp_peer hold "127.0.0.1:$FWD" 1 1 --timeout 5
  [ "$RUN_STATUS" -ne 0 ]; check "stream $((QUOTA + i)) is refused on whichever loop it lands (exit $RUN_STATUS)" $?
done
health "$DC1_URL"
[ "$(json_value streams)" = $QUOTA ]; check "the connector still holds exactly $QUOTA streams ($(loop_streams))" $?
[ "$(json_value streams_over_quota)" -ge 4 ]; check "every refusal is counted (streams_over_quota=$(json_value streams_over_quota))" $?
grep -qF "msg=\"stream quota reached\" spiffe_id=spiffe://example.org/tunneler/laptop limit=$QUOTA" "$DC1_LOG"
check "the connector logs the refusal with the SPIFFE ID and the limit" $?
kill "${HOLDS[@]}" 2>/dev/null; wait "${HOLDS[@]}" 2>/dev/null
for _ in $(seq 1 100); do health "$DC1_URL"; [ "$(json_value streams)" = 0 ] && break; sleep 0.05; done
[ "$(json_value streams)" = 0 ]; check "the held streams end and give their places back" $?
run tcp_peer check "127.0.0.1:$FWD" $QUOTA 65536
expect_out_has "ok streams=$QUOTA" "the tunneler gets its $QUOTA streams again"
finish
