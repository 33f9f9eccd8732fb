#!/usr/bin/env bash
# The Federation page in a real browser (ui/tests/browser/federation.test.mjs)
# against two real controllers on loopback, a.example (with a federation
# listener and a resource pg) and b.example, each behind its own console:
# propose on A's console, accept on B's, both active; a grant of pg to
# spiffe://b.example/tunneler/laptop, listed and revoked; suspend and
# resume; a token replaced; a peer revoked. Heartbeats every 300 ms, stale
# after 2 s (tests/e2e/fed_lib.sh). Screenshots: $UI_SHOTS.
. "$(dirname "$0")/../e2e/lib.sh"; . "$(dirname "$0")/../e2e/fed_lib.sh"
. "$(dirname "$0")/ui_lib.sh"
UI_SHOTS="${UI_SHOTS:-$(cd "$(dirname "$0")/../.." && pwd)/build/ui-test/screenshots}"

fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 || exit 1
fed_start B b.example || exit 1
on A resource add pg --description "postgres of a.example" >/dev/null; check "resource pg on A" $?
on A resource add web >/dev/null; check "resource web on A" $?
start_ui ADMIN_API_URL="$A_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1
A_UI="$UI_URL" A_UI_LOG="$UI_LOG" A_UI_PID="$UI_PID"
start_ui ADMIN_API_URL="$B_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1
B_UI="$UI_URL" B_UI_LOG="$UI_LOG" B_UI_PID="$UI_PID"

TOKEN_FILE="$E2E_TMP/fed.tokens"
run env A_UI="$A_UI" B_UI="$B_UI" A_FED="$A_FED" UI_PASSWORD="$UI_TEST_PASSWORD" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
  UI_SHOTS="$UI_SHOTS" TOKEN_FILE="$TOKEN_FILE" \
  node --test --test-reporter=spec --test-timeout=60000 "$UI_DIR/tests/browser/federation.test.mjs"
printf '%s\n' "$RUN_OUT" "$RUN_ERR" | grep -vE '^\s*$' | sed 's/^/  | /'
expect_status 0 "the browser test"
BROWSER_PASSED="$(sed -n 's/^ℹ pass //p' <<<"$RUN_OUT")"
BROWSER_FAILED="$(sed -n 's/^ℹ fail //p' <<<"$RUN_OUT")"
echo "  browser: ${BROWSER_PASSED:-0} passed, ${BROWSER_FAILED:-?} failed"

# What the controllers hold now, by their own CLI.
run on A federation list
expect_out_has "name=b trust_domain=b.example state=active" "A: b is active after the resume"
expect_out_has "name=c trust_domain=\"\" state=revoked" "A: c, revoked in the console"
run on B federation list
expect_out_has "name=a trust_domain=a.example state=active" "B: a is active"
run on A federation grants
expect_status 0 "A lists its grants"
! grep -q 'tunneler/laptop' <<<"$RUN_OUT"; check "A: the grant revoked in the console is gone" $?
run on A events --source federation_accept
expect_out_has "b.example" "A: the accept is an event with source federation_accept"

# The tokens the pages showed: in no console's or controller's log.
if [ -s "$TOKEN_FILE" ]; then
  leaked=0
  while read -r tok; do
    secret="$(cut -d. -f3 <<<"$tok")"
    [ -n "$secret" ] || continue
    for log in "$A_UI_LOG" "$B_UI_LOG" "$A_LOG" "$B_LOG"; do
      grep -qF -- "$secret" "$log" && { echo "  token secret in $log" >&2; leaked=1; }
    done
  done <"$TOKEN_FILE"
  [ "$leaked" -eq 0 ]; check "no acceptance token in the consoles' or controllers' logs" $?
else
  check "the browser test left the tokens it saw" 1
fi
! grep -qF "$E2E_ADMIN_TOKEN" "$A_UI_LOG" "$B_UI_LOG"; check "the admin token is not in the consoles' logs" $?

UI_PID="$A_UI_PID"; stop_ui
UI_PID="$B_UI_PID"; stop_ui
fed_stop_all
finish
