#!/usr/bin/env bash
# Three controllers on one PostgreSQL database (a real server started
# here), sharing their CA through it (keys sealed with CA_SEAL_KEY_FILE).
# A connector and a tunneler each list all three in CONTROLLER_ADDR.
# Checked, as an operator would see it:
#  - a change made through one controller reaches sessions held by
#    another: `deny` through controller 1 ends a live stream on a connector
#    connected to controller 3 within 1 s;
#  - the controller holding the connector is killed: the connector is
#    ONLINE again through another within seconds, the others see it, and no
#    data-plane session is lost (the data plane never needs the controller);
#  - a token consumed concurrently through two controllers enrolls once;
#  - `ca rotate` through one reaches every controller and their agents,
#    and a dump of the database holds no private key.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../pg.sh"
pg_cluster_e2e || exit 1
URL="$PG_URL"
start_controller c1 STORE_URL="$URL" CA_SEAL_KEY_FILE="$SEAL" || exit 1
C1_ADMIN="$ADMIN_URL" C1_CTL="$CTL_ADDR" C1_PID="$CTL_PID" C1_STATE="$CTL_STATE" C1_LOG="$CTL_LOG"
grep -q 'msg="CA set put into the store"' "$C1_LOG"; check "controller 1 puts its CA into the store" $?
for n in 2 3; do
  start_controller "c$n" STORE_URL="$URL" CA_SEAL_KEY_FILE="$SEAL" || exit 1
  grep -q 'msg="CA set from the store"' "$CTL_LOG"; check "controller $n takes the CA from the store" $?
  [ ! -e "$CTL_STATE/ca/ca-1.key" ]; check "controller $n made no CA key of its own" $?
  printf -v "C${n}_ADMIN" '%s' "$ADMIN_URL"; printf -v "C${n}_CTL" '%s' "$CTL_ADDR"
  printf -v "C${n}_PID" '%s' "$CTL_PID"; printf -v "C${n}_LOG" '%s' "$CTL_LOG"
done
on_c() { local url="C${1}_ADMIN"; shift; ADMIN_URL="${!url}" ctl "$@"; }
CTL_STATE="$C1_STATE"   # agents trust the CA controller 1 made (CONTROLLER_CA)

start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
on_c 1 resource add pg --connector dc1 >/dev/null
# The connector lists controller 3 first: it holds the connector's session.
CTL_ADDR="$C3_CTL,$C1_CTL,$C2_CTL"
start_agent connector dc1 ENROLLMENT_TOKEN="$(on_c 1 token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="pg=127.0.0.1:$ECHO_PORT" || exit 1
keep_agent DC1
on_c 2 allow --tunneler laptop --resource pg >/dev/null
CTL_ADDR="$C1_CTL,$C2_CTL,$C3_CTL"
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(on_c 2 token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=pg" CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms || exit 1
keep_agent LAPTOP
wait_through "127.0.0.1:$FWD" 100; check "a stream goes through (token from 1 and 2, sessions on 3 and 1)" $?
grep -q "controller=$C3_CTL" "$DC1_LOG"; check "dc1's control stream is on controller 3" $?
run on_c 2 node list
expect_out_has "name=dc1 role=connector status=ONLINE" "controller 2 shows dc1 ONLINE (held by 3)"
run on_c 2 controllers
[ "$(grep -c 'alive=true' <<<"$RUN_OUT")" = 3 ]; check "controller 2 lists three controllers alive" $?
expect_out_has "address=$C3_CTL alive=true self=false nodes_online=1" "controller 3 holds one node (dc1)"
expect_out_has "address=$C2_CTL alive=true self=true" "controller 2 marks itself"

# deny through 1: the stream held by dc1 (whose controller is 3) ends.
tcp_peer hold "127.0.0.1:$FWD" 1 30 >"$E2E_TMP/hold.out" 2>&1 &
HOLD=$!; E2E_PIDS+=("$HOLD"); sleep 1
t0=$(date +%s%3N)
on_c 1 deny --tunneler laptop --resource pg >/dev/null
for _ in $(seq 1 60); do kill -0 "$HOLD" 2>/dev/null || break; sleep 0.05; done
t1=$(date +%s%3N)
! kill -0 "$HOLD" 2>/dev/null && [ $((t1 - t0)) -lt 1000 ]
check "deny through controller 1 ended the stream on dc1 (controller 3) in $((t1 - t0)) ms" $?
echo "  deny via 1 -> stream closed under 3: $((t1 - t0)) ms"
on_c 1 allow --tunneler laptop --resource pg >/dev/null
wait_through "127.0.0.1:$FWD" 50; check "allowed again through 1, it works" $?

# Kill controller 3 under load: nothing on the data plane notices.
tcp_peer hold "127.0.0.1:$FWD" 20 8 >"$E2E_TMP/hold2.out" 2>&1 &
HOLD2=$!; E2E_PIDS+=("$HOLD2"); sleep 1
t0=$(date +%s%3N)
kill -KILL "$C3_PID"; wait "$C3_PID" 2>/dev/null
ok=1
for _ in $(seq 1 100); do
  grep -q "controller=$C1_CTL\|controller=$C2_CTL" <(grep 'msg="control-plane stream connected"' "$DC1_LOG") &&
    { ok=0; break; }
  sleep 0.1
done
t1=$(date +%s%3N)
check "dc1 reconnected to another controller in $((t1 - t0)) ms" $ok
echo "  controller 3 killed -> dc1 connected elsewhere: $((t1 - t0)) ms"
ok=1
for _ in $(seq 1 40); do
  on_c 1 node list | grep -q "name=dc1 role=connector status=ONLINE" && { ok=0; break; }
  sleep 0.1
done
check "controller 1 shows dc1 ONLINE" $ok
ok=1
for _ in $(seq 1 50); do
  on_c 1 controllers | grep -qF "address=$C3_CTL alive=false" && { ok=0; break; }
  sleep 0.1
done
check "controller 1 lists controller 3 as not alive after its heartbeat timeout" $ok
wait "$HOLD2"; hs=$?
[ "$hs" -eq 0 ]; check "20 streams held through the kill: none lost (exit $hs)" $?
run tcp_peer check "127.0.0.1:$FWD" 4 256K --timeout 10
expect_status 0 "new streams after the kill"

# One single-use token, two controllers, at once.
TOKEN="$(on_c 1 token create --role tunneler --name racer)"
CTL_ADDR="$C1_CTL" run_agent tunneler racer-a ENROLLMENT_TOKEN="$TOKEN" NODE_NAME=racer \
  STATE_DIR="$E2E_TMP/race-a" >/dev/null 2>&1 &
A=$!
CTL_ADDR="$C2_CTL"
agent_env tunneler racer-b ENROLLMENT_TOKEN="$TOKEN" NODE_NAME=racer STATE_DIR="$E2E_TMP/race-b"
timeout 30 env "${AGENT_ENV[@]}" "$ZTR_TEST_BIN/tunneler" >"$E2E_TMP/race-b.log" 2>&1 &
B=$!
sleep 3
kill -TERM "$A" "$B" 2>/dev/null; wait "$A" "$B" 2>/dev/null
n=$(psql -tA "$URL" -c "SELECT count(*) FROM nodes WHERE name = 'racer'")
[ "$n" = 1 ]; check "the token enrolled exactly one node ($n)" $?
n=$(psql -tA "$URL" -c "SELECT count(*) FROM events WHERE kind = 'enrolled' AND detail LIKE '%racer%'")
[ "$n" -le 1 ]; check "one enrolled event" $?

# A rotation through controller 2 reaches controller 1 and every agent.
[ "$(pg_dump "$URL" | grep -c 'PRIVATE KEY')" = 0 ]; check "a dump of the database holds no private key" $?
run on_c 2 ca rotate
expect_status 0 "controller 2 rotates the CA"
ok=1
for _ in $(seq 1 40); do
  curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$C1_ADMIN/api/admin/ca" | grep -q '"version": *2' &&
    { ok=0; break; }
  sleep 0.05
done
check "controller 1 serves the rotated CA set (version 2) at once" $ok
wait_for_line "$DC1_LOG" 'msg="trust bundle updated" version=2' 5; check "dc1 received bundle version 2" $?
wait_for_line "$LAPTOP_LOG" 'msg="trust bundle updated" version=2' 5; check "laptop received bundle version 2" $?
run tcp_peer check "127.0.0.1:$FWD" 2 64K --timeout 10
expect_status 0 "streams after the rotation"
[ "$(pg_dump "$URL" | grep -c 'PRIVATE KEY')" = 0 ]; check "still no private key in the dump" $?

# A controller with another seal key cannot join.
openssl rand -hex 32 >"$E2E_TMP/other.key"; chmod 600 "$E2E_TMP/other.key"
run timeout 20 env TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/c4" CONTROLLER_LISTEN=127.0.0.1:0 \
  ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
  STORE_URL="$URL" CA_SEAL_KEY_FILE="$E2E_TMP/other.key" "$ZTR_TEST_BIN/controller"
expect_status 1 "a controller with another seal key does not start"
expect_err_has "unseal: authentication failed" "and says why"
expect_err_has "CA_SEAL_KEY_FILE" "naming the setting"

stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
for n in 1 2; do pid="C${n}_PID"; kill -TERM "${!pid}"; wait "${!pid}"; st=$?
  [ "$st" -eq 0 ]; check "controller $n stops cleanly" $?; done
finish
