#!/usr/bin/env bash
# Control-plane sessions: hello/welcome, heartbeats → ONLINE, silence →
# OFFLINE within three intervals, allowlist and connector lists pushed when
# they change, renewal with a fresh key, revocation, the admin API's
# authentication, and state that survives a controller restart.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org)

enroll() { # enroll ROLE NAME [probe options]
  local role="$1" name="$2" allow=(); shift 2
  [ "$role" = connector ] && allow=(--address 127.0.0.1)
  mkdir -p "$T/$name"
  probe enroll "${P[@]}" --ca "$CA" --token "$(ctl token create --role "$role" --name "$name" "${allow[@]}")" \
    --role "$role" --name "$name" --out "$T/$name" "$@" >/dev/null
}
enroll connector dc1-a --address 127.0.0.1
check "connector enrolled" $?
enroll tunneler laptop
check "tunneler enrolled" $?

# hello → welcome + bundle + allowlist; heartbeats keep it ONLINE.
run probe session "${P[@]}" --dir "$T/dc1-a" --role connector --data-listen 127.0.0.1:7444 \
  --resource pg --interval 100 --duration 1200
expect_status 0 "connector session"
expect_out_has '"type":"welcome"' "welcome"
expect_out_has '"heartbeat_interval_ms":300' "welcome carries the heartbeat interval"
expect_out_has '"type":"bundle"' "bundle pushed on connect"
expect_out_has '"type":"allowlist"' "allowlist pushed on connect"
expect_out_has '"type":"heartbeat_ack"' "heartbeats acknowledged"

# Two sessions of one node: the one that ends does not take the node OFFLINE.
probe session "${P[@]}" --dir "$T/dc1-a" --role connector --data-listen 127.0.0.1:7444 \
  --resource pg --interval 100 --duration 2500 >"$T/long.out" 2>&1 &
long=$!
wait_for_line "$T/long.out" '"type":"welcome"' 5
offline_events() { ctl events --limit 1000 | grep -c 'detail="OFFLINE: control stream closed'; }
before=$(offline_events)
run probe session "${P[@]}" --dir "$T/dc1-a" --role connector --until welcome --duration 3000
sleep 0.3
after=$(offline_events)
[ "$before" -eq "$after" ]; check "a second session closing does not take the node OFFLINE ($before → $after events)" $?
run ctl node list
expect_out_has "name=dc1-a role=connector status=ONLINE" "the node stays ONLINE"
wait $long

# A session that stops heartbeating goes OFFLINE within 3 intervals (0.9 s).
# The probe would hold the session for 8 s: OFFLINE before that comes from
# the silence (the event below says so). Polled: a loaded machine is slower.
probe session "${P[@]}" --dir "$T/dc1-a" --role connector --data-listen 127.0.0.1:7444 \
  --resource pg --interval 100 --heartbeats 3 --duration 8000 >"$T/silent.out" 2>&1 &
silent=$!
sleep 0.6
run ctl node list
expect_out_has "name=dc1-a role=connector status=ONLINE" "ONLINE while heartbeating"
for _ in $(seq 60); do
  run ctl node list
  grep -qF "name=dc1-a role=connector status=OFFLINE" <<<"$RUN_OUT" && break
  sleep 0.1
done
expect_out_has "name=dc1-a role=connector status=OFFLINE" "OFFLINE after 3 silent intervals (failure-modes 3.2)"
kill "$silent" 2>/dev/null; wait $silent
run ctl events
expect_out_has "ONLINE" "status changes are events"
expect_out_has "no heartbeat" "the OFFLINE event says why"

# Allowlist and connector lists are pushed when they change.
probe session "${P[@]}" --dir "$T/dc1-a" --role connector --data-listen 127.0.0.1:7444 \
  --resource pg --interval 100 --duration 60000 >"$T/conn.out" 2>&1 &
conn=$!
wait_for_line "$T/conn.out" '"type":"allowlist"' 5
probe session "${P[@]}" --dir "$T/laptop" --role tunneler --interval 100 --duration 60000 >"$T/tun.out" 2>&1 &
tun=$!
wait_for_line "$T/tun.out" '"type":"connectors"' 5
check "tunneler gets a connectors list" $?
run ctl resource add pg --description "postgres" --connector dc1-a
expect_status 0 "resource add"
run ctl allow --tunneler laptop --resource pg
expect_status 0 "allow"
wait_for_line "$T/conn.out" '"spiffe_id":"spiffe://example.org/tunneler/laptop"' 5
check "connector receives the new allowlist" $?
wait_for_line "$T/tun.out" '"address":"127.0.0.1:7444"' 5
check "tunneler learns the connector that serves pg" $?
grep -F '"type":"connectors"' "$T/tun.out" | tail -1 | grep -qF '"spiffe_id":"spiffe://example.org/connector/dc1-a"'
check "connector list names the connector's SPIFFE ID" $?
run ctl allowlist
expect_out_has "tunneler=laptop resource=pg" "allowlist shows the grant"
run ctl deny --tunneler laptop --resource pg
wait_for_line "$T/conn.out" '"tunnelers":[]' 5
check "deny is pushed too" $?

# Revocation: the session receives `revoked` and is closed.
laptop_id=$(ctl node list | grep 'name=laptop' | sed 's/.*id=\([0-9a-f]*\).*/\1/')
run ctl node revoke "$laptop_id" --reason "lost laptop"
expect_status 0 "revoke"
wait $tun
wait_for_line "$T/tun.out" '"type":"revoked"' 2
check "revoked node gets a revoked frame" $?
grep -qF 'closed:' "$T/tun.out"; check "and its stream is closed" $?
run probe session "${P[@]}" --dir "$T/laptop" --role tunneler --duration 2000
expect_out_has '"type":"revoked"' "a revoked node cannot come back"
kill $conn 2>/dev/null; wait $conn 2>/dev/null

# Renewal: a fresh key gets a new chain; the same key is refused.
old_serial=$("$ZTR_TEST_BIN/ztr-pki" inspect "$T/dc1-a/cert.pem" | sed -n 's/.*serial=//p')
run probe session "${P[@]}" --dir "$T/dc1-a" --role connector --renew --until renewed --duration 5000
expect_status 0 "renewal"
new_serial=$("$ZTR_TEST_BIN/ztr-pki" inspect "$T/dc1-a/cert.pem" | sed -n 's/.*serial=//p')
[ -n "$new_serial" ] && [ "$old_serial" != "$new_serial" ]; check "renewed certificate is new" $?
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$CA" --trust-domain example.org --role connector --ip 127.0.0.1 "$T/dc1-a/cert.pem"
expect_status 0 "renewed certificate keeps the IP SAN and verifies"
run probe session "${P[@]}" --dir "$T/dc1-a" --role connector --renew-same-key --until error --duration 5000
expect_out_has '"code":"key_reused"' "renewal with the current key is refused"

# The admin API insists on its token; unknown paths are JSON 404s.
run curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/api/admin/nodes"
expect_out "401" "no bearer token → 401"
run curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong-token-0123456789" "$ADMIN_URL/api/admin/nodes"
expect_out "401" "wrong bearer token → 401"
run curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nope"
expect_out_has '"error"' "unknown path → JSON"
run curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nope"
expect_out "404" "unknown path → 404"

# A restart keeps every node, grant and event; agents reconnect without a token.
ctl allow --tunneler laptop --resource pg >/dev/null
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "clean stop" $?
start_controller ctl || exit 1
run ctl node list
expect_out_has "name=dc1-a" "nodes survive a restart"
expect_out_has "revoked=true" "revocations survive a restart"
run ctl allowlist
expect_out_has "tunneler=laptop resource=pg" "grants survive a restart"
run probe session --controller "$CTL_ADDR" --trust-domain example.org --dir "$T/dc1-a" --role connector --until welcome --duration 5000
expect_status 0 "enrolled connector reconnects after the restart, no token needed"
stop_controller
finish
