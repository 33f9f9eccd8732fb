#!/usr/bin/env bash
# Attack: ride an established data session past the end of the identity
# that opened it. A tunneler whose certificate is about to expire (its
# renewal blocked: the node is cut off from the controller, or was told to
# stop renewing) opens a session and keeps streaming through it for as long
# as it likes: nothing re-checks a peer once the handshake is done. The
# session must end with the peer's identity on both sides: at not_after it
# takes no new stream, and unless the peer proves a renewed certificate
# within DATA_REAUTH_GRACE (2 s here) it ends — the connector cuts a
# tunneler whose certificate expired, the tunneler cuts a connector whose
# certificate expired, each with `peer certificate expired` in its log; the
# expired tunneler cannot open a new session either.
. "$(dirname "$0")/../e2e/lib.sh"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl || exit 1
BIG=$((1024 * 1024 * 1024))
start_peer source "$BIG" || exit 1; SRC_PORT=$PEER_PORT
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
ctl resource add src --connector dc1 >/dev/null; ctl resource add web --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="src=127.0.0.1:$SRC_PORT,web=127.0.0.1:$HTTP_PORT" DATA_REAUTH_GRACE=2s
check "connector starts" $?
keep_agent DC1
DC1_ENV=("${AGENT_ENV[@]}")
ctl allow --tunneler laptop --resource src >/dev/null
ctl allow --tunneler laptop --resource web >/dev/null
FWD=$(free_port); FWD_WEB=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=src,127.0.0.1:$FWD_WEB=web" CONNECTOR_RETRY_MIN=50ms \
  CONNECTOR_RETRY_MAX=200ms DATA_REAUTH_GRACE=2s
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
check "tunneler learns the connector" $?

CAD="$E2E_TMP/ctl-ca"; mkdir -p "$CAD"
cp "$CTL_STATE/ca/ca-1.crt" "$CAD/ca.crt"; cp "$CTL_STATE/ca/ca-1.key" "$CAD/ca.key"

# ---- the tunneler's certificate runs out mid-transfer -------------------------------
"$PKI" csr --key "$LAPTOP_STATE/key.pem" >"$E2E_TMP/laptop.csr"
"$PKI" issue --ca-dir "$CAD" --role tunneler --name laptop --ttl 8s --csr "$E2E_TMP/laptop.csr" \
  --out "$E2E_TMP/laptop-short.pem" >/dev/null
stop_agent "$LAPTOP_PID"
cp "$E2E_TMP/laptop-short.pem" "$LAPTOP_STATE/cert.pem"
# Off the controller: nothing renews it.
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=src,127.0.0.1:$FWD_WEB=web" \
  CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=200ms CONTROLLER_ADDR=127.0.0.1:1 DATA_REAUTH_GRACE=2s
keep_agent LAPTOP
tcp_peer read "127.0.0.1:$FWD" "$BIG" 5000000 >"$E2E_TMP/cut.out" 2>&1 &
READER=$!
sleep 1
kill -0 "$READER" 2>/dev/null; check "a transfer runs through the tunnel" $?
wait_for_line "$DC1_LOG" 'msg="peer certificate expired: waiting for its renewed certificate" spiffe_id=spiffe://example.org/tunneler/laptop' 15
check "at the tunneler's not_after the connector takes no new stream from it" $?
run curl -s -m 5 "http://127.0.0.1:$FWD_WEB/"
[ -z "$RUN_OUT" ]; check "no new stream within the grace" $?
wait_for_line "$DC1_LOG" 'msg="peer certificate expired" spiffe_id=spiffe://example.org/tunneler/laptop' 5
check "the connector ends the session once the grace is over, no renewal proven" $?
for _ in $(seq 1 50); do kill -0 "$READER" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$READER" 2>/dev/null; check "the live transfer is cut" $?
wait "$READER"; [ $? -ne 0 ]
check "the reader sees a cut transfer ($(cat "$E2E_TMP/cut.out"))" $?
grep -F 'msg="data session closed"' "$DC1_LOG" | grep -qF 'reason="peer certificate expired"'
check "the connector's close line names the reason" $?
run curl -s -m 5 "http://127.0.0.1:$FWD_WEB/"
[ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
check "the expired tunneler cannot open a new session (curl exit $RUN_STATUS)" $?

# ---- the connector's certificate runs out: the tunneler ends the session --------------
stop_agent "$LAPTOP_PID"
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=src,127.0.0.1:$FWD_WEB=web" \
  CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=200ms DATA_REAUTH_GRACE=2s
keep_agent LAPTOP
wait_for_state ONLINE 15 "$LAPTOP_URL"; check "the tunneler is back with a fresh certificate" $?
"$PKI" csr --key "$DC1_STATE/key.pem" >"$E2E_TMP/dc1.csr"
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --ip 127.0.0.1 --ttl 8s \
  --csr "$E2E_TMP/dc1.csr" --out "$E2E_TMP/dc1-short.pem" >/dev/null
stop_agent "$DC1_PID"
cp "$E2E_TMP/dc1-short.pem" "$DC1_STATE/cert.pem"
env "${DC1_ENV[@]}" CONTROLLER_ADDR=127.0.0.1:1 "$ZTR_TEST_BIN/connector" >>"$DC1_LOG" 2>&1 &
DC1_PID=$!; E2E_PIDS+=("$DC1_PID")
wait_for_line "$DC1_LOG" 'msg="data listener started"' 10
sleep 0.5
tcp_peer read "127.0.0.1:$FWD" "$BIG" 5000000 >"$E2E_TMP/cut2.out" 2>&1 &
READER=$!
sleep 1
kill -0 "$READER" 2>/dev/null; check "a transfer runs through the connector" $?
wait_for_line "$LAPTOP_LOG" 'msg="peer certificate expired" spiffe_id=spiffe://example.org/connector/dc1' 18
check "the tunneler ends the session after the connector's not_after and its grace" $?
for _ in $(seq 1 50); do kill -0 "$READER" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$READER" 2>/dev/null; check "that transfer is cut too" $?
finish
