#!/usr/bin/env bash
# Attack: one client takes every stream. SOCKS5 has no authentication, so a
# tunneler whose SOCKS5_LISTEN is not on loopback serves anyone who can
# reach it: the operator must be told loudly at start-up. And one local host
# (or one tunneler, seen from a connector) opening streams without end must
# hit a quota — refused beyond it, counted and logged — instead of exhausting
# descriptors and memory for everybody else.
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
ctl resource add echo --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="echo=127.0.0.1:$ECHO_PORT" STREAMS_PER_TUNNELER=4
check "connector starts with STREAMS_PER_TUNNELER=4" $?
keep_agent DC1
ctl allow --tunneler laptop --resource echo >/dev/null
FWD=$(free_port); SOCKS=$(free_port)
TOKEN="$(ctl token create --role tunneler --name laptop)"
start_agent tunneler laptop ENROLLMENT_TOKEN="$TOKEN" FORWARDS="127.0.0.1:$FWD=echo" \
  SOCKS5_LISTEN="0.0.0.0:$SOCKS" CLIENT_STREAMS_MAX=3
check "tunneler starts with SOCKS5 on 0.0.0.0 and CLIENT_STREAMS_MAX=3" $?
keep_agent LAPTOP
[ "$(count_lines "$LAPTOP_LOG" "msg=\"SOCKS5 listener is not on loopback\" listen=0.0.0.0:$SOCKS risk=\"SOCKS5 has no authentication")" -eq 1 ]
check "one warn line names the address and the risk" $?
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10

# ---- per source IP, on the tunneler -----------------------------------------------------
tcp_peer hold "127.0.0.1:$FWD" 3 8 >"$E2E_TMP/hold.out" 2>&1 &
HOLD=$!
for _ in $(seq 1 100); do
  health "$LAPTOP_URL"; [ "$(json_value streams)" = 3 ] && break; sleep 0.1
done
[ "$(json_value streams)" = 3 ]; check "three streams held from 127.0.0.1" $?
run tcp_peer check "127.0.0.1:$FWD" 1 1024 --timeout 5
[ "$RUN_STATUS" -ne 0 ]; check "a fourth through the forward is refused (exit $RUN_STATUS)" $?
run tcp_peer check "127.0.0.1:$SOCKS" 1 1024 --socks5 "127.0.0.1:$SOCKS" echo 7 --timeout 5
[ "$RUN_STATUS" -ne 0 ]; check "SOCKS5 shares the same quota (exit $RUN_STATUS)" $?
grep -qF 'msg="client stream quota reached" ip=127.0.0.1 limit=3' "$LAPTOP_LOG"
check "the tunneler logs the refusal with the IP and the limit" $?
run curl -s "$LAPTOP_URL/metrics"
grep -q '^ztr_client_streams_over_quota_total [1-9]' <<<"$RUN_OUT"
check "ztr_client_streams_over_quota_total counts the refusals" $?
[ "$(count_lines "$LAPTOP_LOG" 'msg="client stream quota reached"')" -le 2 ]
check "the log line is rate-limited" $?
wait "$HOLD"; check "the held streams were never disturbed ($(cat "$E2E_TMP/hold.out"))" $?
run tcp_peer check "127.0.0.1:$FWD" 3 65536
expect_out_has "ok streams=3" "once they end, the IP gets its streams again"

# ---- per tunneler, on the connector -------------------------------------------------------
stop_agent "$LAPTOP_PID"
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=echo" CLIENT_STREAMS_MAX=50
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
tcp_peer hold "127.0.0.1:$FWD" 4 8 >"$E2E_TMP/hold2.out" 2>&1 &
HOLD=$!
for _ in $(seq 1 100); do
  health "$DC1_URL"; [ "$(json_value streams)" = 4 ] && break; sleep 0.1
done
[ "$(json_value streams)" = 4 ]; check "four streams held on the connector" $?
run tcp_peer check "127.0.0.1:$FWD" 1 1024 --timeout 5
[ "$RUN_STATUS" -ne 0 ]; check "a fifth stream from the tunneler is refused (exit $RUN_STATUS)" $?
grep -qF 'msg="stream quota reached" spiffe_id=spiffe://example.org/tunneler/laptop limit=4' "$DC1_LOG"
check "the connector logs the refusal with the SPIFFE ID and the limit" $?
grep -qF 'reason="stream quota reached"' "$LAPTOP_LOG"
check "the tunneler hears why (RST REFUSED \"stream quota reached\")" $?
run curl -s "$DC1_URL/metrics"
grep -q '^ztr_streams_over_quota_total [1-9]' <<<"$RUN_OUT"
check "ztr_streams_over_quota_total counts it" $?
wait "$HOLD"; check "the held streams were never disturbed ($(cat "$E2E_TMP/hold2.out"))" $?
finish
