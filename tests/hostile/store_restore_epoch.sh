#!/usr/bin/env bash
# Attack: undo a revocation by restoring the controller's database. An older
# controller.db copied back (a routine restore, or someone with the backups)
# numbers allowlist versions from lower again; a connector that only takes
# newer versions would ignore every push from then on, the revocation of a
# stolen tunneler included. Each controller start is a new push epoch: a
# connector takes a list of another epoch whatever its version.
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
ctl resource add web --connector dc1 >/dev/null
ctl resource add other --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT"
check "connector starts" $?
keep_agent DC1
ctl allow --tunneler laptop --resource web >/dev/null
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=web"
check "tunneler starts" $?
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "the tunnel works"

# The backup: a clean copy of controller.db, taken with the controller stopped.
stop_controller
cp "$CTL_STATE/controller.db" "$E2E_TMP/controller.db.backup"
check "controller.db backed up" $?
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1

# Changes after the backup: the allowlist version moves on, the connector has it.
for i in 1 2 3 4 5; do
  ctl allow --tunneler "t$i" --resource other >/dev/null
done
metric_of() { curl -s "$DC1_URL/metrics" | sed -n "s/^$1 //p"; }
high=0
for _ in $(seq 1 50); do
  high=$(metric_of ztr_allowlist_version)
  [ "${high:-0}" -ge 6 ] && break
  sleep 0.2
done
[ "${high:-0}" -ge 6 ]; check "the connector enforces the newer allowlist (version ${high:-none})" $?

# The stolen tunneler keeps its old connector list and does not listen to
# the controller any more: only the connector can refuse it.
stop_agent "$LAPTOP_PID"

# The restore: the older database comes back.
stop_controller
cp "$E2E_TMP/controller.db.backup" "$CTL_STATE/controller.db"
rm -f "$CTL_STATE/controller.db-wal" "$CTL_STATE/controller.db-shm"
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
epoch=$(grep -F 'msg="push epoch"' "$CTL_LOG" | tail -1 | sed -n 's/.*epoch=\([0-9a-f]*\).*/\1/p')
[ ${#epoch} -eq 16 ]; check "the restarted controller logs its push epoch ($epoch)" $?

# The revocation that must not be ignored.
ctl deny --tunneler laptop --resource web >/dev/null
check "laptop denied web on the restored controller" $?
wait_for_line "$DC1_LOG" "tunnelers=0 epoch=$epoch" 10
check "the connector takes the allowlist of the new epoch, lower version and all" $?
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=web" CONTROLLER_ADDR="127.0.0.1:$(free_port)"
check "the tunneler restarts on its saved connector list, away from the controller" $?
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list loaded from disk"' 10
run curl -s -m 5 "http://127.0.0.1:$FWD/"
[ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
check "the connector applies the revocation: the data session is refused" $?
grep -F 'msg="tunneler not allowed"' "$DC1_LOG" | grep -qF 'spiffe_id=spiffe://example.org/tunneler/laptop'
check "the connector logs: tunneler not allowed, laptop" $?
! grep -qF 'msg="allowlist ignored"' "$DC1_LOG"
check "no push was ignored" $?
run curl -s "$DC1_URL/metrics"
expect_out_has "ztr_pushes_ignored_total 0" "ztr_pushes_ignored_total exported"
# The epoch is persisted with the list: a restarted connector keeps it.
grep -qF "\"epoch\":\"$epoch\"" "$DC1_STATE/allowlist.json"
check "allowlist.json holds the epoch" $?
finish
