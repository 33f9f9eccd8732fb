#!/usr/bin/env bash
# Moving from SQLite to PostgreSQL (docs/OPERATIONS.md): a controller on
# SQLite with agents, an allowlist and events is stopped; `controller store
# migrate` copies its store into an empty PostgreSQL database (a real
# server started here) and verifies every table's row count; the same
# controller then starts on PostgreSQL and its agents pass traffic again
# without enrolling anew. Refused: while the controller runs, and into a
# store that holds nodes already.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../pg.sh"
pg_e2e || exit 1
URL="$PG_URL"

dp_start() {  # the data plane of a controller just started
  start_agent connector dc1 ${1:+ENROLLMENT_TOKEN="$1"} RESOURCES="web=127.0.0.1:$HTTP_PORT" || return 1
  keep_agent DC1
  start_agent tunneler laptop ${2:+ENROLLMENT_TOKEN="$2"} FORWARDS="127.0.0.1:$FWD=web" \
    CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms || return 1
  keep_agent LAPTOP
  local i
  for i in $(seq 1 100); do
    curl -s -m 2 "http://127.0.0.1:$FWD/" | grep -q "hello from resource" && return 0
    sleep 0.1
  done
  return 1
}
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
FWD=$(free_port)
ctl resource add web --connector dc1 >/dev/null
ctl allow --tunneler laptop --resource web >/dev/null
ctl token create --role tunneler --name spare --uses 3 >/dev/null
dp_start "$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  "$(ctl token create --role tunneler --name laptop)"
check "on SQLite: a request goes through" $?
ctl node list >"$E2E_TMP/nodes.before"

run ctl store migrate --from "sqlite://$CTL_STATE/controller.db" --to "$URL"
expect_status 1 "refused while the controller runs"
expect_err_has "stop every controller on it first" "saying what to do"

stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"; stop_controller
# The controller leaves its row stale on a clean stop: no wait needed.
EVENTS_BEFORE=$(sqlite3 "$CTL_STATE/controller.db" "SELECT count(*) FROM events")
run ctl store migrate --from "sqlite://$CTL_STATE/controller.db" --to "$URL"
expect_status 0 "the store is copied"
expect_out_has "copied table=nodes rows=2 verified=true" "nodes copied and counted"
expect_out_has "copied table=tokens rows=3 verified=true" "tokens copied and counted"
expect_out_has "table=events rows=$EVENTS_BEFORE verified=true" "every event"
run ctl store migrate --from "sqlite://$CTL_STATE/controller.db" --to "$URL"
expect_status 1 "a second copy into the now full target is refused"
expect_err_has "copy into an empty store only" "naming why"

start_controller ctl STORE_URL="$URL" || exit 1
run ctl node list
sed 's/status=[A-Z]*//; s/last_seen=[^ ]*//' "$E2E_TMP/nodes.before" | sort >"$E2E_TMP/a"
sed 's/status=[A-Z]*//; s/last_seen=[^ ]*//' <<<"$RUN_OUT" | sort >"$E2E_TMP/b"
cmp -s "$E2E_TMP/a" "$E2E_TMP/b"; check "the same nodes on PostgreSQL" $?
dp_start; check "on PostgreSQL: the same agents, no new enrollment, a request goes through" $?
! grep -q 'msg="enrolled"' "$LAPTOP_LOG"; check "laptop did not enroll again" $?
run ctl events --kind admin
expect_out_has "allow" "the admin events came along"
ctl token create --role tunneler --name after >/dev/null; check "new rows get new ids" $?
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller; [ "$STOP_STATUS" -eq 0 ]; check "stops cleanly" $?
finish
