#!/usr/bin/env bash
# Failure mode 6.1 (the document: the Next.js UI logs `404 Not Found` and
# cannot fetch data when an /api/admin/* route is missing or its proxy is
# misconfigured). Both causes, reproduced with the web console (ui/, built
# by `make ui`) in front of a real controller:
#  - a path the console has no route for: 404 with a JSON error naming the
#    route, `msg="404 Not Found"` in the console's log, the controller never
#    asked;
#  - a wrong proxy configuration (ADMIN_API_URL with a prefix the admin API
#    does not serve): the controller's 404 is passed on, logged with the
#    upstream URL, and the nodes page shows "404 Not Found: cannot fetch
#    /api/admin/nodes" instead of data.
# The admin API's own answer to such paths (and the CLI's) is checked too.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../../ui/ui_lib.sh"
fm_mode 6.1 "404 on /api/admin/* in Next.js" "404 Not Found"
start_controller ctl || exit 1
ctl token create --role connector --name dc1 --address 127.0.0.1 >/dev/null

# The console, configured right: a path it has no route for.
start_ui ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1
run curl -s -w ' %{http_code}' "$UI_URL/api/admin/nope"
expect_out '{"error":"log in to the console first"} 401' "without a console session: 401 before routing"
ui_login; check "log in to the console" $?
ui_get api/admin/nope
[ "$UI_CODE" = 404 ]; check "GET /api/admin/nope through the console: 404" $?
expect_out '{"error":"not found: the console has no route GET /api/admin/nope"}' "the JSON error names the missing route"
wait_for_line "$UI_LOG" 'msg="404 Not Found" method=GET path=/api/admin/nope' 5
fm_seen "$UI_LOG"
fm_trim
ui_get api/admin/nodes
[ "$UI_CODE" = 200 ]; check "a route it has still fetches data" $?
grep -qF '"nodes":[' <<<"$RUN_OUT"; check "... the node list" $?
stop_ui

# The console with a wrong proxy configuration: a prefix the API lacks.
start_ui ADMIN_API_URL="$ADMIN_URL/ui" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1
ui_login; check "log in to the misconfigured console" $?
ui_get api/admin/nodes
[ "$UI_CODE" = 404 ]; check "GET /api/admin/nodes with ADMIN_API_URL=.../ui: 404" $?
expect_out '{"error":"not found"}' "the controller's error is passed on"
wait_for_line "$UI_LOG" "upstream=\"GET $ADMIN_URL/ui/api/admin/nodes\"" 5
grep -F 'msg="404 Not Found"' "$UI_LOG" | grep -qF "upstream=\"GET $ADMIN_URL/ui/api/admin/nodes\" error=\"not found\""
check "the console logs 404 Not Found with the upstream URL it asked" $?
ui_get ""
[ "$UI_CODE" = 200 ]; check "the nodes page still renders" $?
grep -qF '404 Not Found<!-- -->: cannot fetch <!-- -->/api/admin/nodes' <<<"$RUN_OUT" ||
  grep -qF '404 Not Found: cannot fetch /api/admin/nodes' <<<"$RUN_OUT"
check "the page says 404 Not Found: cannot fetch /api/admin/nodes" $?
grep -qF 'No node has enrolled yet.' <<<"$RUN_OUT"; check "... and shows no data" $?
! grep -qF "$E2E_ADMIN_TOKEN" "$UI_LOG"; check "the admin token is not in the console's log" $?
stop_ui
seen_ui="$FM_SEEN"

# The admin API itself: JSON 404 for an unknown path, 401 before routing.
AUTH=(-H "Authorization: Bearer $E2E_ADMIN_TOKEN")
run curl -si -m 5 "${AUTH[@]}" "$ADMIN_URL/api/admin/nope"
tr -d '\r' <<<"$RUN_OUT" | grep -qx 'HTTP/1.1 404 Not Found'; check "admin API: HTTP/1.1 404 Not Found" $?
expect_out_has '{"error":"not found"}' "admin API: body {\"error\":\"not found\"}"
run curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/api/admin/nope"
expect_out 401 "admin API: unknown path without the token: 401"
# The CLI with the same wrong base URL.
run env ADMIN_URL="$ADMIN_URL/ui" "$ZTR_TEST_BIN/controller" node list
expect_status 1 "the CLI with the wrong ADMIN_URL cannot fetch data"
expect_err "error: not found" "the CLI reports the API's 404 error text"
run ctl token list
expect_out_has "name=dc1" "with the right ADMIN_URL the CLI fetches data"
FM_SEEN="$seen_ui; page: 404 Not Found: cannot fetch /api/admin/nodes (ADMIN_API_URL=.../ui)"
stop_controller
fm_finish
