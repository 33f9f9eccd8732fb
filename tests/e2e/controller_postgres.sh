#!/usr/bin/env bash
# The controller on PostgreSQL (STORE_URL): a real server started here
# (tests/pg.sh). Enrollment, the allowlist and a request through the data
# plane work as on SQLite; a restart keeps the state; two controllers on
# the same database share it (a token made on one is consumed on the other,
# once); a password in STORE_URL is refused naming the key, never echoed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../pg.sh"
pg_e2e || exit 1
URL="$PG_URL"

run env TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/x" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
  STORE_URL="postgresql://ztr:s3cret@127.0.0.1:$PG_PORT/ztr" "$ZTR_TEST_BIN/controller"
expect_status 2 "a password in STORE_URL is a configuration error"
expect_err_has "STORE_URL" "naming the key"
! grep -q s3cret <<<"$RUN_OUT$RUN_ERR"; check "the password is never echoed" $?

start_controller one STORE_URL="$URL" || exit 1
ONE_ADMIN="$ADMIN_URL" ONE_CTL="$CTL_ADDR" ONE_STATE="$CTL_STATE" ONE_PID="$CTL_PID"
[ ! -e "$CTL_STATE/controller.db" ]; check "no SQLite file when STORE_URL names PostgreSQL" $?
[ "$(psql -tA "$URL" -c 'SELECT version FROM ztr_schema_version')" -ge 1 ]
check "the schema is in PostgreSQL" $?

start_peer http || exit 1; HTTP_PORT=$PEER_PORT
ctl resource add web --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT" || exit 1
keep_agent DC1
ctl allow --tunneler laptop --resource web >/dev/null
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=web" CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms || exit 1
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
ok=1
for _ in $(seq 1 50); do
  curl -s -m 2 "http://127.0.0.1:$FWD/" | grep -q "hello from resource" && { ok=0; break; }
  sleep 0.1
done
check "a request goes through, the controller on PostgreSQL" $ok
[ "$(psql -tA "$URL" -c "SELECT count(*) FROM nodes")" = 2 ]; check "both nodes are rows in PostgreSQL" $?

# A second controller on the same database, with the same CA files.
mkdir -p "$E2E_TMP/two"; cp -r "$ONE_STATE/ca" "$E2E_TMP/two/"
start_controller two STORE_URL="$URL" || exit 1
TWO_ADMIN="$ADMIN_URL" TWO_CTL="$CTL_ADDR"
run env ADMIN_URL="$TWO_ADMIN" "$ZTR_TEST_BIN/controller" node list
expect_out_has "name=dc1" "controller two lists what one enrolled"
TOKEN="$(ADMIN_URL="$ONE_ADMIN" ctl token create --role tunneler --name phone)"
CTL_ADDR="$TWO_CTL" CTL_STATE="$E2E_TMP/two"
start_agent tunneler phone ENROLLMENT_TOKEN="$TOKEN" || exit 1
wait_for_line "$AGENT_LOG" 'msg="enrolled"' 10; check "a token made on one enrolls on two" $?
stop_agent
CTL_ADDR="$ONE_CTL" CTL_STATE="$ONE_STATE"
run_agent tunneler phone2 ENROLLMENT_TOKEN="$TOKEN" STATE_DIR="$E2E_TMP/agent-phone2"
expect_err_has "invalid enrollment token" "the same token on one again is refused: single use across controllers"

# A restart keeps everything.
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
kill -TERM "$ONE_PID"; wait "$ONE_PID"; [ $? -eq 0 ]; check "controller one stops cleanly" $?
start_controller one STORE_URL="$URL" || exit 1
run ctl allowlist
expect_out_has "laptop" "the allowlist survived the restart"
run ctl node list
expect_out_has "name=phone" "so did the node enrolled through two"
stop_controller; [ "$STOP_STATUS" -eq 0 ]; check "stops cleanly" $?
finish
