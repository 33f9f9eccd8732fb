#!/usr/bin/env bash
# The data plane end to end: a real controller, connector and tunneler on
# loopback with real resources (an HTTP server, an echo server, a byte
# source). Requests through a port forward and through SOCKS5, 100 parallel
# checksummed streams with half-close, a large transfer to a slow reader
# with flat memory, a tunneler the connector refuses, removal from the
# allowlist in the middle of a transfer, and fail-static without the
# controller.
. "$(dirname "$0")/lib.sh"
# Under ASan freed memory sits in a quarantine (256 MB by default), which
# would hide what the slow-reader check measures: keep it small here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
BIG=$((1024 * 1024 * 1024))
start_peer source "$BIG" || exit 1; SRC_PORT=$PEER_PORT
for r in web echo src dead; do ctl resource add "$r" --connector dc1 >/dev/null; done
DEAD_PORT=$(free_port)   # nothing listens there: the target refuses
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT,echo=127.0.0.1:$ECHO_PORT,src=127.0.0.1:$SRC_PORT,dead=127.0.0.1:$DEAD_PORT"
check "connector starts" $?
keep_agent DC1
for r in web echo src dead; do ctl allow --tunneler laptop --resource "$r" >/dev/null; done
FWD_WEB=$(free_port); FWD_ECHO=$(free_port); FWD_SRC=$(free_port); SOCKS=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD_WEB=web,127.0.0.1:$FWD_ECHO=echo,127.0.0.1:$FWD_SRC=src" \
  SOCKS5_LISTEN="127.0.0.1:$SOCKS" DATA_PING_INTERVAL=1s
check "tunneler starts" $?
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
check "the tunneler learns the connector from the controller" $?
expect_file_mode "$LAPTOP_STATE/connectors.json" 600 "the connector list is persisted privately"

# ---- requests through both front ends ---------------------------------------------
run curl -s -m 10 "http://127.0.0.1:$FWD_WEB/"
expect_out "hello from resource" "curl through the port forward"
run curl -s -m 10 --socks5-hostname "127.0.0.1:$SOCKS" "http://web/"
expect_out "hello from resource" "curl through SOCKS5, resource by name"
run curl -s -m 10 --socks5-hostname "127.0.0.1:$SOCKS" "http://127.0.0.1:$HTTP_PORT/"
expect_out "hello from resource" "curl through SOCKS5, resource by target"
run curl -s -m 10 --socks5-hostname "127.0.0.1:$SOCKS" "http://db.internal:5432/"
[ "$RUN_STATUS" -ne 0 ]; check "SOCKS5 to an unknown name fails (curl exit $RUN_STATUS)" $?
grep -qF 'reason="no resource matches the SOCKS5 request" socks5_reply="host unreachable"' "$LAPTOP_LOG"
check "the tunneler logs why and answers SOCKS5 host unreachable" $?
run curl -s -m 10 --socks5-hostname "127.0.0.1:$SOCKS" "http://dead/"
[ "$RUN_STATUS" -ne 0 ]; check "SOCKS5 to a resource whose target refuses fails (curl exit $RUN_STATUS)" $?
grep -F 'resource="dead"' "$LAPTOP_LOG" | grep -qF "connect: connection refused)\" socks5_reply=\"connection refused\""
check "the tunneler logs the target's refusal and answers SOCKS5 connection refused" $?
grep -qF 'msg="data session opened" connector=' "$LAPTOP_LOG"
check "one data session to the connector" $?
# One session per connector per worker (WORKERS: the usable cores here).
[ "$(count_lines "$LAPTOP_LOG" 'msg="data session opened"')" -le "$(nproc)" ]
check "streams share one session per worker (no handshake per stream)" $?

# ---- many streams, both directions, half-close ------------------------------------
run tcp_peer check "127.0.0.1:$FWD_ECHO" 100 1048576
expect_out_has "ok streams=100" "100 parallel streams of 1 MiB each echo back intact"
run tcp_peer check "127.0.0.1:$SOCKS" 20 262144 --socks5 "127.0.0.1:$SOCKS" echo 7
expect_out_has "ok streams=20" "20 parallel streams through SOCKS5 echo back intact"
# check half-closes each stream and needs the echo to end with EOF: the FIN
# crossed the relay both ways while the other direction kept flowing.
health "$LAPTOP_URL"
[ "$(json_value streams)" = 0 ]; check "every stream closed after the transfers" $?
health "$DC1_URL"
[ "$(json_value streams)" = 0 ]; check "the connector's streams closed too" $?

# ---- a slow reader stops the writer: 1 GiB with memory flat ---------------------------
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
base_dc1=$(rss_kib "$DC1_PID"); base_laptop=$(rss_kib "$LAPTOP_PID")
tcp_peer read "127.0.0.1:$FWD_SRC" "$BIG" 200000000 >"$E2E_TMP/slow.out" 2>&1 &
READER=$!
max_dc1=$base_dc1; max_laptop=$base_laptop
while kill -0 "$READER" 2>/dev/null; do
  r=$(rss_kib "$DC1_PID"); [ "$r" -gt "$max_dc1" ] && max_dc1=$r
  r=$(rss_kib "$LAPTOP_PID"); [ "$r" -gt "$max_laptop" ] && max_laptop=$r
  sleep 0.2
done
wait "$READER"; status=$?
[ "$status" -eq 0 ] && grep -q "^ok bytes=$BIG" "$E2E_TMP/slow.out"
ok=$?
check "1 GiB arrives intact at a reader limited to 200 MB/s ($(cat "$E2E_TMP/slow.out"))" $ok
echo "  RSS growth during the transfer: connector $((max_dc1 - base_dc1)) KiB, tunneler $((max_laptop - base_laptop)) KiB"
[ $((max_dc1 - base_dc1)) -lt 16384 ] && [ $((max_laptop - base_laptop)) -lt 16384 ]
check "neither side's memory grows by 16 MiB while 1 GiB passes" $?

# ---- a tunneler the connector refuses ------------------------------------------------
# intruder has an identity and the connector's address (a list saved while
# it was allowed), but is not on the allowlist: the connector refuses it.
ctl allow --tunneler intruder --resource web >/dev/null
start_agent tunneler intruder ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name intruder)" \
  FORWARDS="127.0.0.1:$(free_port)=web" SOCKS5_LISTEN=off
keep_agent INTRUDER
wait_for_line "$INTRUDER_LOG" 'msg="connector list received" version=' 10
cp "$INTRUDER_STATE/connectors.json" "$E2E_TMP/intruder-connectors.json"
stop_agent "$INTRUDER_PID"
ctl deny --tunneler intruder --resource web >/dev/null
wait_for_json "$DC1_URL" tunnelers 1 5
INTRUDER_FWD=$(free_port)
cp "$E2E_TMP/intruder-connectors.json" "$INTRUDER_STATE/connectors.json"
# The controller is unreachable for it (wrong port), so the stale list stays.
start_agent tunneler intruder FORWARDS="127.0.0.1:$INTRUDER_FWD=web" SOCKS5_LISTEN=off \
  CONTROLLER_ADDR=127.0.0.1:1
keep_agent INTRUDER
wait_for_line "$INTRUDER_LOG" 'msg="connector list loaded from disk"' 5
run curl -s -m 10 "http://127.0.0.1:$INTRUDER_FWD/"
[ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
check "a client of a tunneler not on the allowlist gets nothing (curl exit $RUN_STATUS)" $?
wait_for_line "$DC1_LOG" 'msg="tunneler not allowed" spiffe_id=spiffe://example.org/tunneler/intruder' 5
check "the connector logs tunneler not allowed with the SPIFFE ID" $?
wait_for_line "$INTRUDER_LOG" 'msg="tunneler not allowed"' 5
check "the tunneler logs tunneler not allowed" $?
health "$DC1_URL"
[ "$(json_value tunnelers_rejected)" -ge 1 ]; check "the connector counts the rejection" $?
stop_agent "$INTRUDER_PID"

# ---- fail-static: the controller goes away -----------------------------------------
tcp_peer read "127.0.0.1:$FWD_SRC" "$BIG" 100000000 >"$E2E_TMP/static.out" 2>&1 &
READER=$!
sleep 0.5
stop_controller
wait_for_json "$LAPTOP_URL" link reconnecting 10
check "the tunneler sees the controller gone" $?
run tcp_peer check "127.0.0.1:$FWD_ECHO" 10 65536
expect_out_has "ok streams=10" "new streams still open without the controller"
run curl -s -m 10 "http://127.0.0.1:$FWD_WEB/"
expect_out "hello from resource" "curl still works without the controller"
kill -0 "$READER" 2>/dev/null
check "the running transfer is still going" $?
kill "$READER" 2>/dev/null; wait "$READER" 2>/dev/null

# ---- removal from the allowlist mid-transfer ----------------------------------------------
# The connector enforces removal itself: "offline" has a stale connector list
# and no controller link (as a tunneler that ignores the controller would),
# so only the connector can cut it. The controller comes back on its port.
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_json "$DC1_URL" link connected 10
check "the connector is back on the controller" $?
ctl allow --tunneler offline --resource src >/dev/null
start_agent tunneler offline ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name offline)" \
  SOCKS5_LISTEN=off
keep_agent OFFLINE
wait_for_line "$OFFLINE_LOG" 'msg="connector list received" version=' 10
stop_agent "$OFFLINE_PID"
OFFLINE_FWD=$(free_port)
start_agent tunneler offline FORWARDS="127.0.0.1:$OFFLINE_FWD=src" SOCKS5_LISTEN=off \
  CONTROLLER_ADDR=127.0.0.1:1
keep_agent OFFLINE
tcp_peer read "127.0.0.1:$OFFLINE_FWD" "$BIG" 50000000 >"$E2E_TMP/cut.out" 2>&1 &
READER=$!
sleep 1
kill -0 "$READER" 2>/dev/null; check "a long transfer is running" $?
ctl deny --tunneler offline --resource src >/dev/null
before=$(date +%s%N)
for ((i = 0; i < 100; i++)); do kill -0 "$READER" 2>/dev/null || break; sleep 0.02; done
after=$(date +%s%N)
wait "$READER"; status=$?
[ "$status" -ne 0 ] && grep -q "^error after" "$E2E_TMP/cut.out"
ok=$?
check "the transfer is cut ($(cat "$E2E_TMP/cut.out"))" $ok
elapsed_ms=$(((after - before) / 1000000))
[ "$elapsed_ms" -lt 1000 ]
check "the client sees the cut $elapsed_ms ms after the allowlist change (< 1 s)" $?
wait_for_line "$DC1_LOG" 'msg="tunneler not allowed" spiffe_id=spiffe://example.org/tunneler/offline' 5
check "the connector logs tunneler not allowed for the removed tunneler" $?
run curl -s "$DC1_URL/metrics"
grep -q '^ztr_revocation_apply_seconds_bucket{le="1"} [1-9]' <<<"$RUN_OUT"
check "ztr_revocation_apply_seconds: the removal took effect within 1 s" $?
stop_agent "$OFFLINE_PID"

# The same for a tunneler on the controller: its client is cut as well.
wait_for_json "$LAPTOP_URL" link connected 10
tcp_peer read "127.0.0.1:$FWD_SRC" "$BIG" 50000000 >"$E2E_TMP/cut2.out" 2>&1 &
READER=$!
sleep 1
ctl deny --tunneler laptop --resource src >/dev/null
for ((i = 0; i < 100; i++)); do kill -0 "$READER" 2>/dev/null || break; sleep 0.02; done
wait "$READER"; status=$?
[ "$status" -ne 0 ]; ok=$?
check "laptop's transfer of a resource it lost is cut ($(cat "$E2E_TMP/cut2.out"))" $ok
run curl -s -m 10 "http://127.0.0.1:$FWD_WEB/"
expect_out "hello from resource" "a resource it still has keeps working"

stop_agent "$LAPTOP_PID"; check "the tunneler stops cleanly (exit $AGENT_STATUS)" $([ "$AGENT_STATUS" -eq 0 ]; echo $?)
stop_agent "$DC1_PID"; check "the connector stops cleanly (exit $AGENT_STATUS)" $([ "$AGENT_STATUS" -eq 0 ]; echo $?)
finish
