#!/usr/bin/env bash
# Tunnels survive expiry and re-authentication (seed 004's invariant:
# rotating a node's credential never tears down an established tunnel),
# and a session still never outlives an identity that was not renewed.
# A 20 MB transfer at 1 MB/s runs through tunneler → connector while the
# controller is away: both certificates (SVID_TTL=10s) expire mid-transfer,
# each side stops taking new streams from the other and waits
# (DATA_REAUTH_GRACE=20s); the controller comes back, both re-authenticate
# by proof of possession and present their new certificates on the live
# session, which each peer checks and adopts. Every byte arrives in order
# (tcp_peer checks the pattern), one data session carries it all, none is
# closed, and the session takes new streams again.
. "$(dirname "$0")/lib.sh"
BYTES=$((20 * 1024 * 1024))
start_controller ctl SVID_TTL=10s || exit 1
start_peer source "$BYTES" || exit 1; SRC_PORT=$PEER_PORT
start_peer http || exit 1; WEB_PORT=$PEER_PORT
ctl resource add src --connector dc1 >/dev/null; ctl resource add web --connector dc1 >/dev/null
ctl allow --tunneler laptop --resource src >/dev/null; ctl allow --tunneler laptop --resource web >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="src=127.0.0.1:$SRC_PORT,web=127.0.0.1:$WEB_PORT" DATA_REAUTH_GRACE=20s
keep_agent DC1
FWD=$(free_port); FWD_WEB=$(free_port)
# One tunneler loop: the new streams below must ride on the session that
# carries the transfer (with more loops a client may land on another loop
# and its own session).
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=src,127.0.0.1:$FWD_WEB=web" DATA_REAUTH_GRACE=20s WORKERS=1
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
wait_for_state ONLINE 10 "$DC1_URL"; check "connector ONLINE" $?
wait_for_state ONLINE 10 "$LAPTOP_URL"; check "tunneler ONLINE" $?
# The controller leaves before either renews (half of 10 s).
stop_controller
health "$DC1_URL"; DC1_NA=$(json_value not_after)
health "$LAPTOP_URL"; LAPTOP_NA=$(json_value not_after)
LAST_NA=$((DC1_NA > LAPTOP_NA ? DC1_NA : LAPTOP_NA))

tcp_peer read "127.0.0.1:$FWD" "$BYTES" 1048576 >"$E2E_TMP/read.out" 2>&1 &
READER=$!; E2E_PIDS+=("$READER")
sleep 1
kill -0 "$READER" 2>/dev/null; check "the transfer runs" $?

# ---- both certificates run out --------------------------------------------------------
wait_for_line "$DC1_LOG" 'msg="peer certificate expired: waiting for its renewed certificate" spiffe_id=spiffe://example.org/tunneler/laptop' $((LAST_NA - $(date +%s) + 5))
check "the connector holds the session for the expired tunneler (grace)" $?
wait_for_line "$LAPTOP_LOG" 'msg="peer certificate expired: waiting for its renewed certificate" spiffe_id=spiffe://example.org/connector/dc1' 5
check "the tunneler holds it for the expired connector (grace)" $?
wait_for_state REAUTHENTICATING 5 "$DC1_URL"; check "connector REAUTHENTICATING" $?
wait_for_state REAUTHENTICATING 5 "$LAPTOP_URL"; check "tunneler REAUTHENTICATING" $?
kill -0 "$READER" 2>/dev/null; check "the transfer still runs past both not_after" $?
run curl -s -m 5 "http://127.0.0.1:$FWD_WEB/"
[ -z "$RUN_OUT" ]; check "no new stream on an expired identity" $?

# ---- the controller is back: both re-authenticate -------------------------------------
start_controller ctl SVID_TTL=10s CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_state ONLINE 10 "$DC1_URL"; check "connector re-authenticated" $?
wait_for_state ONLINE 10 "$LAPTOP_URL"; check "tunneler re-authenticated" $?
for log in "$DC1_LOG" "$LAPTOP_LOG"; do
  grep -qF 'method=proof-of-possession not_after=' "$log"; check "by proof of possession ($log)" $?
done
wait_for_line "$DC1_LOG" 'msg="peer certificate renewed" spiffe_id=spiffe://example.org/tunneler/laptop' 5
check "the connector adopts the tunneler's new certificate on the live session" $?
wait_for_line "$LAPTOP_LOG" 'msg="peer certificate renewed" spiffe_id=spiffe://example.org/connector/dc1' 5
check "the tunneler adopts the connector's" $?
grep -F 'msg="peer certificate renewed"' "$DC1_LOG" | grep -qF 'after_expiry=true'
check "after the expiry, within the grace" $?
run curl -s -m 5 "http://127.0.0.1:$FWD_WEB/"
expect_out "hello from resource" "the same session takes new streams again"

wait "$READER"; status=$?
[ "$status" -eq 0 ] && grep -q "^ok bytes=$BYTES" "$E2E_TMP/read.out"
check "every byte arrived, in order: 0 bytes lost ($(cat "$E2E_TMP/read.out"))" $?
for log in "$DC1_LOG" "$LAPTOP_LOG"; do
  [ "$(count_lines "$log" 'msg="data session closed"')" -eq 0 ]; check "0 data sessions closed ($log)" $?
  ! grep -qF 'msg="peer certificate expired" ' "$log"; check "no session cut at expiry ($log)" $?
done
[ "$(count_lines "$LAPTOP_LOG" 'msg="data session opened"')" -eq 1 ]
check "one data session carried the whole transfer" $?
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller
finish
