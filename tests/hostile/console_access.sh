#!/usr/bin/env bash
# Attack: get at the admin API through the web console (ui/) without its
# password: serve it on the network in the clear, guess the password (with
# a forged client address), post from another site (login CSRF, CSRF on a
# change), rebind a DNS name to 127.0.0.1, replay a logged-out cookie, look
# for the admin token in what the console answers, send a huge login body.
# Each is refused: exit 2 at start-up, 429 after 5 failures per address,
# 403, 421, 401, 413.
. "$(dirname "$0")/../e2e/lib.sh"; . "$(dirname "$0")/../ui/ui_lib.sh"
start_controller ctl || exit 1
CFG=(ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN")
ui_built; check "the console is built (make ui)" $? || { finish; exit 1; }

# ---- start-up refusals -------------------------------------------------------
ui() { run timeout 20 env -u ADMIN_API_URL -u ADMIN_AUTH_TOKEN UI_PASSWORD="$UI_TEST_PASSWORD" "$@" node "$UI_DIR/server.mjs"; }
ui UI_LISTEN=0.0.0.0:0 "${CFG[@]}"
expect_status 2 "a non-loopback UI_LISTEN without TLS is refused"
expect_err_has 'UI_LISTEN=0.0.0.0:0 is not a loopback address: serve it over TLS (UI_TLS_CERT, UI_TLS_KEY) or set UI_LISTEN_INSECURE=true' \
  "the refusal names the key and both ways out"
ui UI_LISTEN=127.0.0.1:0 UI_PASSWORD= "${CFG[@]}"
expect_status 2 "no UI_PASSWORD: refused"
expect_err_has 'UI_PASSWORD is required: the console never runs without a login' "the refusal names the setting"
ui UI_LISTEN=127.0.0.1:0 UI_PASSWORD=short "${CFG[@]}"
expect_status 2 "a short UI_PASSWORD: refused"
run timeout 20 env UI_LISTEN=127.0.0.1:0 UI_PASSWORD="$UI_TEST_PASSWORD" node "$UI_DIR/server.mjs" --password=x
expect_status 2 "no setting (and so no secret) is taken from the command line"
start_ui UI_LISTEN=0.0.0.0:0 UI_LISTEN_INSECURE=true "${CFG[@]}"
check "with UI_LISTEN_INSECURE=true it starts" $?
grep -qF 'level=warn msg="UI_LISTEN_INSECURE=true: the console' "$UI_LOG"; check "... and warns" $?
stop_ui

start_ui "${CFG[@]}" || exit 1
login() { # PASSWORD [curl args]: prints the status code
  local pw="$1"; shift
  curl -s -o /dev/null -w '%{http_code}' -H "Origin: $UI_URL" -H 'Accept: application/json' \
    -H 'Content-Type: application/json' -d "{\"password\":\"$pw\"}" "$@" "$UI_URL/api/session"
}

# ---- login CSRF and rebinding -------------------------------------------------------
run login "$UI_TEST_PASSWORD" -H 'Origin: http://evil.example'
expect_out 403 "a login posted from another site: 403"
run login "$UI_TEST_PASSWORD" -H 'Origin: null'
expect_out 403 "a login with Origin: null: 403"
port="${UI_URL##*:}"
run curl -s -o /dev/null -w '%{http_code}' -H "Host: rebound.evil.example:$port" "$UI_URL/login"
expect_out 421 "a page asked for under another host name (DNS rebinding): 421"

head -c 5000000 /dev/zero | tr '\0' 'a' >"$E2E_TMP/big"
run curl -s -o /dev/null -w '%{http_code}' -H "Origin: $UI_URL" -H 'Accept: application/json' \
  -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/big" "$UI_URL/api/session"
expect_out 413 "a 5 MB login body: 413, not buffered"
run curl -s -o /dev/null -w '%{http_code}' -H "Origin: $UI_URL" -H 'Accept: application/json' -H 'Transfer-Encoding: chunked' \
  -H 'Content-Type: application/json' --data-binary @"$E2E_TMP/big" "$UI_URL/api/session"
expect_out 413 "... nor chunked"

# ---- password guessing, with a forged client address -----------------------------
codes=""
for i in 1 2 3 4 5; do codes+="$(login "guess-$i-xxxxxxxx" -H "X-Ztr-Peer: 10.0.0.$i" -H "X-Forwarded-For: 10.0.0.$i") "; done
[ "$codes" = "401 401 401 401 401 " ]; check "5 wrong passwords: 401 each (got $codes)" $?
run curl -s -D "$E2E_TMP/h" -H "Origin: $UI_URL" -H 'Accept: application/json' -H 'Content-Type: application/json' \
  -d "{\"password\":\"$UI_TEST_PASSWORD\"}" -H 'X-Ztr-Peer: 10.9.9.9' "$UI_URL/api/session"
grep -qE '^HTTP/1.1 429' "$E2E_TMP/h"; check "the 6th attempt, right password and another claimed address: 429" $?
grep -qi '^retry-after: [0-9]' "$E2E_TMP/h"; check "... with Retry-After" $?
expect_out_has 'too many failed logins: try again in' "... saying when"
[ "$(grep -c 'msg="login failed" peer=127.0.0.1' "$UI_LOG")" -eq 5 ]; check "the failures are logged with the real peer address" $?
grep -qF 'msg="login refused: too many failures" peer=127.0.0.1' "$UI_LOG"; check "the refusal is logged" $?
stop_ui

# ---- CSRF on changes; a replayed cookie ---------------------------------------------
start_ui "${CFG[@]}" || exit 1
ui_login; check "log in" $?
csrf="$(curl -s -b "$UI_JAR" "$UI_URL/" | grep -o 'name="ztr-csrf" content="[^"]*"' | sed 's/.*content="//; s/"$//')"
[ -n "$csrf" ]; check "the page carries a CSRF token" $?
post() { curl -s -o /dev/null -w '%{http_code}' -b "$UI_JAR" -H 'Content-Type: application/json' \
  -d '{"role":"tunneler","name":"evil"}' "$@" "$UI_URL/api/admin/tokens"; }
run post -H "Origin: $UI_URL"
expect_out 403 "a change without the CSRF token: 403"
run post -H "Origin: $UI_URL" -H "X-Csrf-Token: ${csrf%?}x"
expect_out 403 "a change with a wrong CSRF token: 403"
run post -H "Origin: http://evil.example" -H "X-Csrf-Token: $csrf"
expect_out 403 "the right token from another origin: 403"
run ctl token list
! grep -qF 'name=evil' <<<"$RUN_OUT"; check "the controller created no token" $?
run post -H "Origin: $UI_URL" -H "X-Csrf-Token: $csrf"
expect_out 201 "the same change from the console's page: 201"
for p in "" login api/admin/nodes api/admin/tokens; do
  curl -s -i -b "$UI_JAR" "$UI_URL/$p"
done >"$E2E_TMP/answers"
! grep -qF "$E2E_ADMIN_TOKEN" "$E2E_TMP/answers"; check "the admin token is in no page or answer (headers included)" $?
run curl -s -o /dev/null -w '%{http_code}' -b "$UI_JAR" -X POST -H "Origin: $UI_URL" -H "X-Csrf-Token: $csrf" "$UI_URL/api/session/logout"
expect_out 303 "log out"
run curl -s -o /dev/null -w '%{http_code}' -b "$UI_JAR" "$UI_URL/api/admin/nodes"
expect_out 401 "the logged-out cookie replayed: 401"
! grep -qF "$E2E_ADMIN_TOKEN" "$UI_LOG"; check "the admin token is not in the console's log" $?
! grep -qF "$UI_TEST_PASSWORD" "$UI_LOG"; check "nor the password" $?
stop_ui
stop_controller
finish
