#!/usr/bin/env bash
# Credential rotation never tears a session down: with 20 s certificates the
# connector and the tunneler both renew while a transfer runs through them,
# and the transfer completes with every byte intact on the same session. New
# handshakes after the old certificates expired use the renewed ones.
. "$(dirname "$0")/lib.sh"
TTL=20
start_controller ctl SVID_TTL=${TTL}s || exit 1
# 16 s at 40 MB/s: longer than the time to both renewals (≤ 60 % of 20 s).
BYTES=$((40000000 * 16))
start_peer source "$BYTES" || exit 1; SRC_PORT=$PEER_PORT
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
for r in src web; do ctl resource add "$r" --connector dc1 >/dev/null; done
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="src=127.0.0.1:$SRC_PORT,web=127.0.0.1:$HTTP_PORT"
keep_agent DC1
for r in src web; do ctl allow --tunneler laptop --resource "$r" >/dev/null; done
FWD_SRC=$(free_port); FWD_WEB=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD_SRC=src,127.0.0.1:$FWD_WEB=web" SOCKS5_LISTEN=off
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
health "$DC1_URL"; dc1_not_after=$(json_value not_after)
health "$LAPTOP_URL"; laptop_not_after=$(json_value not_after)

tcp_peer read "127.0.0.1:$FWD_SRC" "$BYTES" 40000000 >"$E2E_TMP/read.out" 2>&1 &
READER=$!
wait_for_line "$DC1_LOG" 'msg="certificate renewed"' $((TTL * 6 / 10 + 5))
check "the connector renews during the transfer" $?
wait_for_line "$LAPTOP_LOG" 'msg="certificate renewed"' $((TTL * 6 / 10 + 5))
check "the tunneler renews during the transfer" $?
kill -0 "$READER" 2>/dev/null; check "the transfer is still running after both renewals" $?
wait "$READER"; status=$?
[ "$status" -eq 0 ] && grep -q "^ok bytes=$BYTES" "$E2E_TMP/read.out"
ok=$?
check "every byte arrived intact ($(cat "$E2E_TMP/read.out"))" $ok
[ "$(count_lines "$LAPTOP_LOG" 'msg="data session opened"')" -eq 1 ]
check "the same data session carried it (no reconnect)" $?
[ "$(count_lines "$LAPTOP_LOG" 'msg="data session closed"')" -eq 0 ]
check "no data session was closed" $?

# After the first certificates expired, new handshakes use renewed ones.
now=$(date +%s)
wait_s=$(( (dc1_not_after > laptop_not_after ? dc1_not_after : laptop_not_after) - now + 1 ))
[ "$wait_s" -gt 0 ] && sleep "$wait_s"
stop_agent "$LAPTOP_PID"
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD_SRC=src,127.0.0.1:$FWD_WEB=web" SOCKS5_LISTEN=off
keep_agent LAPTOP
run curl -s -m 10 "http://127.0.0.1:$FWD_WEB/"
expect_out "hello from resource" "a new session after the first certificates expired works"
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
finish
