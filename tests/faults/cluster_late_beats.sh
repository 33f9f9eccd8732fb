#!/usr/bin/env bash
# Two controllers on one PostgreSQL database (a real server started here)
# whose beats look late to each other, as an operator would see it:
#  - clock skew: controller 2's wall clock runs 30 s behind
#    controller 1's (hosts whose clocks disagree). Beats are stamped and
#    judged on the database's clock, so controller 1 neither lists
#    controller 2 as dead nor takes its connector OFFLINE.
#  - late beats: controller 2's beats stop reaching the database (held back
#    by a trigger, as a blocked loop or a slow database would) while its
#    sessions go on. Controller 1 releases controller 2's connector
#    ("OFFLINE: controller <id> stopped answering"); controller 2 hears it
#    and takes the node back ("ONLINE: its session is live on controller
#    <id>"). Once its beats land again the connector stays ONLINE, held by
#    controller 2, and its control session never ended.
# Before controllers took their nodes back, the connector stayed OFFLINE
# with its session up; before beats used the database's clock, the skew
# alone did the same.
. "$(dirname "$0")/fault_lib.sh"
. "$(dirname "$0")/../pg.sh"
pg_cluster_e2e || exit 1
URL="$PG_URL"
CLOCK="$E2E_TMP/clock"
echo -30 >"$CLOCK"
clock_env "$CLOCK"

start_controller c1 STORE_URL="$URL" CA_SEAL_KEY_FILE="$SEAL" || exit 1
C1_ADMIN="$ADMIN_URL" C1_STATE="$CTL_STATE" C1_LOG="$CTL_LOG"
start_controller c2 "${CLOCK_ENV[@]}" STORE_URL="$URL" CA_SEAL_KEY_FILE="$SEAL" || exit 1
C2_ADMIN="$ADMIN_URL" C2_CTL="$CTL_ADDR" C2_LOG="$CTL_LOG"
on_c() { local url="C${1}_ADMIN"; shift; ADMIN_URL="${!url}" ctl "$@"; }
sql() { psql -tA "$URL" -c "$1"; }
CTL_STATE="$C1_STATE"   # agents trust the CA controller 1 made (CONTROLLER_CA)

start_peer echo || exit 1
on_c 1 resource add pg --connector dc1 >/dev/null
CTL_ADDR="$C2_CTL"   # dc1's session is on controller 2, the one whose clock is behind
start_agent connector dc1 \
  ENROLLMENT_TOKEN="$(on_c 1 token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="pg=127.0.0.1:$PEER_PORT" || exit 1
keep_agent DC1
on_c 1 allow --tunneler laptop --resource pg >/dev/null
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(on_c 1 token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=pg" || exit 1
keep_agent LAPTOP
wait_through "127.0.0.1:$FWD" 100; check "a stream goes through" $?
C2_ID=$(sql "SELECT controller_id FROM nodes WHERE name = 'dc1'")
[ -n "$C2_ID" ]; check "dc1 is held by controller 2 ($C2_ID)" $?

# ---- clock skew ----------------------------------------------------------------------
sleep 3   # ten heartbeat intervals: ten sweeps of each controller
run on_c 1 node list
expect_out_has "name=dc1 role=connector status=ONLINE" "controller 1 shows dc1 ONLINE with controller 2's clock 30 s behind"
run on_c 1 controllers
[ "$(grep -c 'alive=true' <<<"$RUN_OUT")" = 2 ]; check "controller 1 lists both controllers alive" $?
[ "$(sql "SELECT count(*) FROM events WHERE detail LIKE 'OFFLINE: controller % stopped answering'")" = 0 ]
check "no node was released for a controller that beats" $?

# ---- late beats ----------------------------------------------------------------------
CONNECTS=$(count_lines "$DC1_LOG" 'msg="control-plane stream connected"')
sql "CREATE FUNCTION ztr_test_hold_beat() RETURNS trigger AS \$\$ BEGIN RETURN OLD; END \$\$ LANGUAGE plpgsql;
     CREATE TRIGGER hold_beat BEFORE UPDATE ON controllers FOR EACH ROW
       WHEN (OLD.id = '$C2_ID') EXECUTE FUNCTION ztr_test_hold_beat();" >/dev/null
check "controller 2's beats are held back" $?
released() { sql "SELECT count(*) FROM events WHERE node_id = (SELECT id FROM nodes WHERE name = 'dc1')
                  AND detail = 'OFFLINE: controller $C2_ID stopped answering'"; }
reclaimed() { sql "SELECT count(*) FROM events WHERE node_id = (SELECT id FROM nodes WHERE name = 'dc1')
                   AND detail = 'ONLINE: its session is live on controller $C2_ID'"; }
for _ in $(seq 1 50); do [ "$(released)" -gt 0 ] && break; sleep 0.1; done
[ "$(released)" -gt 0 ]; check "controller 1 released dc1: controller 2 looked silent" $?
for _ in $(seq 1 50); do [ "$(reclaimed)" -gt 0 ] && break; sleep 0.1; done
[ "$(reclaimed)" -gt 0 ]; check "controller 2 took dc1 back: its session is live there" $?
grep -q 'msg="node ONLINE".*name=dc1 reason="its session is live here"' "$C2_LOG"
check "controller 2 logs node ONLINE for dc1 with the reason" $?
sql "DROP TRIGGER hold_beat ON controllers" >/dev/null
check "controller 2's beats land again" $?
sleep 2   # beats land, sweeps of both: nothing is released any more
R0=$(released)
sleep 1
[ "$(released)" = "$R0" ]; check "no more releases once controller 2's beats land" $?
run on_c 1 node list
expect_out_has "name=dc1 role=connector status=ONLINE" "controller 1 shows dc1 ONLINE"
[ "$(sql "SELECT controller_id FROM nodes WHERE name = 'dc1'")" = "$C2_ID" ]
check "dc1 is held by controller 2 again" $?
[ "$(count_lines "$DC1_LOG" 'msg="control-plane stream connected"')" = "$CONNECTS" ]
check "dc1's control session never ended" $?
wait_through "127.0.0.1:$FWD" 20; check "streams go through" $?
finish
