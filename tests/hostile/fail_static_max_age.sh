#!/usr/bin/env bash
# Attack: keep a connector serving on an old decision. An attacker who can
# cut the connector off its controller (a firewall rule, a DoS on the
# controller) would freeze the allowlist forever: a tunneler revoked in the
# meantime keeps its access as long as the link stays down. Fail-static is
# bounded by ALLOWLIST_MAX_AGE (here 3s): past it the connector cuts the
# live transfer, refuses new sessions, says why in its log, /health and
# /metrics, and serves again once the controller delivers a fresh allowlist.
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
BIG=$((1024 * 1024 * 1024))
start_peer source "$BIG" || exit 1; SRC_PORT=$PEER_PORT
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
ctl resource add web --connector dc1 >/dev/null; ctl resource add src --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT,src=127.0.0.1:$SRC_PORT" ALLOWLIST_MAX_AGE=3s
check "connector starts with ALLOWLIST_MAX_AGE=3s" $?
keep_agent DC1
ctl allow --tunneler laptop --resource web >/dev/null
ctl allow --tunneler laptop --resource src >/dev/null
FWD=$(free_port); FWD_SRC=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=web,127.0.0.1:$FWD_SRC=src"
check "tunneler starts" $?
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "the tunnel works while the controller is up"
# Longer than the max age: the controller's heartbeats keep it current.
sleep 4
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "a connected controller keeps an unchanged allowlist current"
run curl -s "$DC1_URL/metrics"
expect_out_has "ztr_allowlist_stale 0" "ztr_allowlist_stale is 0 while current"

# The attack: the controller becomes unreachable; a transfer is running.
tcp_peer read "127.0.0.1:$FWD_SRC" "$BIG" 20000000 >"$E2E_TMP/cut.out" 2>&1 &
READER=$!
sleep 0.5
stop_controller
wait_for_line "$DC1_LOG" 'msg="allowlist too old, data sessions refused"' 10
check "the connector stops serving past ALLOWLIST_MAX_AGE" $?
grep -F 'msg="allowlist too old, data sessions refused"' "$DC1_LOG" | grep -qF 'max_age_seconds=3'
check "the log line names the age and the limit" $?
for _ in $(seq 1 100); do kill -0 "$READER" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$READER" 2>/dev/null
check "the live transfer is cut" $?
wait "$READER"; [ $? -ne 0 ]
check "the reader sees a failed transfer, not a complete one ($(cat "$E2E_TMP/cut.out"))" $?
run curl -s -m 10 "http://127.0.0.1:$FWD/"
[ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
check "a new request is refused (curl exit $RUN_STATUS)" $?
grep -F 'msg="data session refused"' "$DC1_LOG" | grep -qF 'allowlist too old'
check "the connector logs the refused session with the reason" $?
health "$DC1_URL"
[ "$HEALTH_CODE" = 503 ]; check "/health is 503 (got $HEALTH_CODE)" $?
[ "$(json_value stale)" = true ]; check "/health says the allowlist is stale" $?
[[ "$HEALTH_BODY" == *'"refusing":"allowlist too old:'* ]]
check "/health gives the reason sessions are refused" $?
run curl -s "$DC1_URL/metrics"
expect_out_has "ztr_allowlist_stale 1" "ztr_allowlist_stale is 1"
expect_out_has "ztr_allowlist_age_seconds " "ztr_allowlist_age_seconds still exported"

# A restart does not reset the clock: the age comes from STATE_DIR.
stop_agent "$DC1_PID"
start_agent connector dc1 RESOURCES="web=127.0.0.1:$HTTP_PORT,src=127.0.0.1:$SRC_PORT" \
  ALLOWLIST_MAX_AGE=3s
keep_agent DC1
wait_for_line "$DC1_LOG" 'msg="allowlist too old, data sessions refused"' 5
check "restarted without the controller, the old allowlist is still refused" $?

# The controller comes back: a fresh allowlist, service resumes.
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_line "$DC1_LOG" 'msg="allowlist current again, data sessions served"' 15
check "a fresh allowlist from the controller ends the refusal" $?
ok=1
for _ in $(seq 1 50); do
  [ "$(curl -s -m 5 "http://127.0.0.1:$FWD/")" = "hello from resource" ] && { ok=0; break; }
  sleep 0.2
done
check "the tunnel serves again" $ok
run curl -s "$DC1_URL/metrics"
expect_out_has "ztr_allowlist_stale 0" "ztr_allowlist_stale back to 0"
finish
