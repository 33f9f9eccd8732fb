#!/usr/bin/env bash
# The web console in a real browser (ui/tests/browser/console.test.mjs,
# Debian's Chromium driven by playwright-core) against a controller, a
# connector next to an HTTP resource and a tunneler allowed to it, then an
# agent enrolled with the token the browser created. The
# heartbeat is 1 s: the test wants OFFLINE on the page within 3 s of the
# tunneler's death. Screenshots: $UI_SHOTS (default build/ui-test/screenshots).
. "$(dirname "$0")/../e2e/lib.sh"; . "$(dirname "$0")/../e2e/failure_modes/fm_helpers.sh"
. "$(dirname "$0")/ui_lib.sh"
UI_SHOTS="${UI_SHOTS:-$(cd "$(dirname "$0")/../.." && pwd)/build/ui-test/screenshots}"

dp_setup HEARTBEAT_INTERVAL=1s || exit 1
run curl -s -m 10 "http://127.0.0.1:$FWD/"
[ "$RUN_STATUS" -eq 0 ] && [ -n "$RUN_OUT" ]; check "a request through the tunneler works before the browser starts" $?
start_ui ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1

TOKEN_FILE="$E2E_TMP/phone.token"
run env UI_URL="$UI_URL" UI_PASSWORD="$UI_TEST_PASSWORD" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" UI_SHOTS="$UI_SHOTS" \
  ADMIN_URL="$ADMIN_URL" \
  HEARTBEAT_MS=1000 LAPTOP_PID="$LAPTOP_PID" FWD="$FWD" TOKEN_FILE="$TOKEN_FILE" \
  node --test --test-reporter=spec --test-timeout=60000 "$UI_DIR/tests/browser/console.test.mjs"
printf '%s\n' "$RUN_OUT" "$RUN_ERR" | grep -vE '^\s*$' | sed 's/^/  | /'
expect_status 0 "the browser test"
BROWSER_PASSED="$(sed -n 's/^ℹ pass //p' <<<"$RUN_OUT")"
BROWSER_FAILED="$(sed -n 's/^ℹ fail //p' <<<"$RUN_OUT")"
echo "  browser: ${BROWSER_PASSED:-0} passed, ${BROWSER_FAILED:-?} failed"

# The token the page showed enrolls an agent.
if [ -s "$TOKEN_FILE" ]; then
  start_agent tunneler phone ENROLLMENT_TOKEN="$(cat "$TOKEN_FILE")"
  check "a tunneler enrolls with the token created in the console" $?
  # It logs enrolled after it started: read the log once it is ONLINE.
  wait_node_status phone ONLINE 10; check "... and is ONLINE" $?
  grep -qF 'msg="enrolled"' "$AGENT_LOG"; check "... and says enrolled" $?
else
  check "the browser test left the token it created" 1
fi

# What the server logged: no token, no crash.
! grep -qF "$E2E_ADMIN_TOKEN" "$UI_LOG"; check "the admin token is not in the console's log" $?
! grep -qF "$UI_TEST_PASSWORD" "$UI_LOG"; check "the console password is not in its log" $?
grep -qF 'msg="login failed" peer=127.0.0.1' "$UI_LOG"; check "the wrong password is logged as login failed" $?
grep -qE 'msg="404 Not Found" method=GET path=/api/admin/nope' "$UI_LOG"; check "the unknown admin path is logged as 404 Not Found" $?
stop_ui
finish
