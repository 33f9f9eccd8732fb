#!/usr/bin/env bash
# Another process holds the write lock on controller.db (sqlite3, BEGIN
# EXCLUSIVE) longer than the busy timeout: a change waits out the timeout
# and answers 503 "store unavailable: database is locked", nothing is
# applied, the nodes stay ONLINE, and once the lock is released the next
# change works.
. "$(dirname "$0")/store_lib.sh"
command -v sqlite3 >/dev/null || { echo "  SKIP: no sqlite3 command"; exit 0; }
HOLD_S=5   # the controller's busy timeout is 2 s
# A write waits out the busy timeout on the event loop: with heartbeats
# every second, agents (3 intervals without an ack) ride it out.
start_controller ctl HEARTBEAT_INTERVAL=1s || exit 1
start_peer echo || exit 1
relay_pair echo,spare || exit 1
before="$(store_snapshot)"

# The lock holder: takes the write lock, says so, holds it HOLD_S seconds.
{ printf '.timeout 5000\nBEGIN EXCLUSIVE;\nSELECT %s;\n' "'locked'"; sleep "$HOLD_S"; echo 'COMMIT;'; } |
  sqlite3 "$CTL_STATE/controller.db" >"$E2E_TMP/holder.out" 2>&1 &
HOLDER=$!
E2E_PIDS+=("$HOLDER")
wait_for_line "$E2E_TMP/holder.out" locked 10; check "another process holds the write lock" $?
t0=$(date +%s%N)
admin_call POST /allowlist '{"tunneler":"laptop","resource":"spare"}'
waited_ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ADMIN_CODE" = 503 ] && grep -qF "store unavailable: database is locked" <<<"$ADMIN_BODY"
check "allow answers 503 \"store unavailable: database is locked\" (got $ADMIN_CODE $ADMIN_BODY)" $?
echo "  allow waited ${waited_ms} ms for the lock"
[ "$waited_ms" -ge 1500 ] && [ "$waited_ms" -lt "$((HOLD_S * 1000))" ]
check "it waited the busy timeout (2 s), not for the lock's release" $?
health_start=$(date +%s%N)
health "$HEALTH_URL"
health_ms=$((($(date +%s%N) - health_start) / 1000000))
echo "  /health answered in ${health_ms} ms while locked"
[ "$HEALTH_CODE" = 200 ] && [ "$(json_value store)" = unavailable ] &&
  [ "$(json_value store_error)" = "database is locked" ]
check "/health answers while locked and says why ($HEALTH_CODE $HEALTH_BODY)" $?
metric_at_least "$HEALTH_URL" 'ztr_store_errors_total{kind="busy"}' 1
check "ztr_store_errors_total{kind=\"busy\"} counts it" $?
kill -0 "$HOLDER" 2>/dev/null; check "the lock was still held through these checks" $?
wait "$HOLDER"
check "the lock holder committed and let go" $?

after="$(store_snapshot)"
[ "$before" = "$after" ]; check "nothing was applied while locked" $?
run ctl node list
[ "$(grep -c ONLINE <<<"$RUN_OUT")" -eq 2 ]; check "both nodes stayed ONLINE" $?
wait_through "127.0.0.1:$FWD" 20; check "streams still go through" $?
run ctl allow --tunneler laptop --resource spare
expect_status 0 "the next change after the lock is released succeeds"
wait_for_line "$CTL_LOG" 'msg="store writable again"' 10
check "the controller logs that the store is writable again" $?
health "$HEALTH_URL"
[ "$(json_value store)" = writable ]; check "/health says writable again" $?
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "the controller stops cleanly (no sanitizer report)" $?
finish
