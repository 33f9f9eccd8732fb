#!/usr/bin/env bash
# make demo's script end to end (DEMO_HOLD=0: it stops by itself after the
# requests): both requests go through, every node reports ONLINE, the web
# console starts (when built) and says its URL and password, and it
# leaves no process and no temp dir behind.
. "$(dirname "$0")/lib.sh"
before="$(ls -d /tmp/ztr-demo.* 2>/dev/null | sort)"
run env DEMO_HOLD=0 DEMO_BIN="$ZTR_TEST_BIN" timeout 120 bash "$ZTR_TEST_ROOT/scripts/demo.sh"
expect_status 0 "the demo runs"
[ "$(grep -cx 'hello from resource' <<<"$RUN_OUT")" -eq 2 ]
check "a request through the forward and one through SOCKS5 get the resource's answer" $?
[ "$(grep -c 'role=[a-z]* status=ONLINE' <<<"$RUN_OUT")" -eq 2 ]
check "the admin API lists connector and tunneler ONLINE" $?
grep -q '^connector:  {"state":"ONLINE"' <<<"$RUN_OUT" && grep -q '^tunneler:   {"state":"ONLINE"' <<<"$RUN_OUT"
check "both agents' /health say ONLINE" $?
if [ -f "$ZTR_TEST_ROOT/ui/.next/BUILD_ID" ]; then
  grep -qE '^console: http://127\.0\.0\.1:[0-9]+   password: demo-[0-9a-f]+$' <<<"$RUN_OUT"
  check "the demo prints the console's URL and password" $?
  grep -qx 'console /login: HTTP 200' <<<"$RUN_OUT"; check "the console answers" $?
fi
dir="$(sed -n 's/^stopped; removed //p' <<<"$RUN_OUT")"
[ -n "$dir" ] && [ ! -e "$dir" ]; check "the temp dir is gone ($dir)" $?
[ "$(ls -d /tmp/ztr-demo.* 2>/dev/null | sort)" = "$before" ]; check "no other demo dir left" $?
! pgrep -f "$dir" >/dev/null; check "no process of the demo is left" $?
finish
