#!/usr/bin/env bash
# Failure mode 6.1 (the document: a Next.js UI whose /api/admin/* route is
# missing or whose proxy is misconfigured logs `404 Not Found` and cannot
# fetch data). ztr has no web UI; its admin API is what such a UI would
# proxy to, and the CLI is its client. Both causes, reproduced against them:
# an /api/admin/ path the API does not have, and a client pointed at the
# wrong base (ADMIN_URL with a proxy prefix). The admin API answers
# `HTTP/1.1 404 Not Found` with a JSON error; the CLI gets no data and
# exits 1 (it prints the API's error text, `error: not found`).
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 6.1 "404 on /api/admin/* in Next.js" "404 Not Found"
start_controller ctl || exit 1
AUTH=(-H "Authorization: Bearer $E2E_ADMIN_TOKEN")

# A route the admin API does not have.
run curl -si -m 5 "${AUTH[@]}" "$ADMIN_URL/api/admin/nope"
printf '%s\n' "$RUN_OUT" | tr -d '\r' >"$E2E_TMP/missing-route.http"
fm_seen "$E2E_TMP/missing-route.http"
status_line=$FM_SEEN
grep -qx 'HTTP/1.1 404 Not Found' "$E2E_TMP/missing-route.http"; check "status line HTTP/1.1 404 Not Found" $?
grep -qix 'content-type: application/json' "$E2E_TMP/missing-route.http"; check "JSON, not an HTML page" $?
expect_out_has '{"error":"not found"}' "body {\"error\":\"not found\"}"
run curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$ADMIN_URL/api/admin/nodes/0123456789abcdef"
expect_out 404 "an unknown node is a 404 too"
# Without the token it is 401 before routing (a UI without ADMIN_AUTH_TOKEN
# sees 401, not 404: see 6.2).
run curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/api/admin/nope"
expect_out 401 "unknown path without the token: 401"

# A client with the wrong base URL (a proxy prefix the API does not serve).
run curl -si -m 5 "${AUTH[@]}" "$ADMIN_URL/ui/api/admin/nodes"
tr -d '\r' <<<"$RUN_OUT" | grep -qx 'HTTP/1.1 404 Not Found'
check "wrong proxy prefix: HTTP/1.1 404 Not Found" $?
run env ADMIN_URL="$ADMIN_URL/ui" "$ZTR_TEST_BIN/controller" node list
expect_status 1 "the CLI with the wrong ADMIN_URL cannot fetch data"
expect_err "error: not found" "the CLI reports the API's 404 error text"
[ -z "$RUN_OUT" ]; check "no data printed" $?
# The same client with the right base URL fetches the data.
ctl token create --role connector --name dc1 --address 127.0.0.1 >/dev/null
run ctl token list
expect_status 0 "with the right ADMIN_URL the CLI fetches data"
expect_out_has "name=dc1" "... and lists it"
FM_SEEN="$status_line {\"error\":\"not found\"} (GET /api/admin/nope); CLI with ADMIN_URL=.../ui: error: not found, exit 1"
stop_controller
fm_finish
