#!/usr/bin/env bash
# Failure mode 6.2 (the document: a UI started without ADMIN_API_URL or
# ADMIN_AUTH_TOKEN logs `ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured`
# and cannot fetch admin endpoints). Reproduced with the web console (ui/,
# built by `make ui`): without either variable (unset or empty) it still
# starts, logs exactly that line, every /api/admin/* route answers 500 with
# {"error":"ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured"}, and every
# page shows it as a banner. With both set the banner is gone and data
# flows. The controller's CLI and daemon say what they need in their own
# words (ADMIN_AUTH_TOKEN is required), checked too.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../../ui/ui_lib.sh"
fm_mode 6.2 "Missing ADMIN_API_URL or ADMIN_AUTH_TOKEN" "ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured"
TEXT="ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured"
C="$ZTR_TEST_BIN/controller"
start_controller ctl || exit 1

# unconfigured WHAT VAR=value...: the console started with those settings
# shows the failure mode in its log, its API and its pages.
unconfigured() {
  local what="$1"; shift
  start_ui "$@" || return 1
  grep -qxF "$TEXT" "$UI_LOG"; check "$what: the console logs exactly \"$TEXT\"" $?
  [ -z "$FM_SEEN" ] && fm_seen "$UI_LOG"
  run curl -s -w ' %{http_code}' "$UI_URL/api/admin/nodes"
  expect_out "{\"error\":\"$TEXT\"} 500" "$what: /api/admin/nodes answers 500 with the text"
  ui_login; check "$what: the console login still works" $?
  for path in api/admin/tokens api/admin/events api/admin/ca; do
    ui_get "$path"
    [ "$UI_CODE" = 500 ] && [ "$RUN_OUT" = "{\"error\":\"$TEXT\"}" ]
    check "$what: /$path answers 500 with the text" $?
  done
  run curl -s -X POST -b "$UI_JAR" -H "Origin: $UI_URL" -w ' %{http_code}' "$UI_URL/api/admin/ca/rotate"
  expect_out "{\"error\":\"$TEXT\"} 500" "$what: a change answers the same"
  run curl -s "$UI_URL/login"
  grep -qF "data-testid=\"config-banner\"><strong>$TEXT</strong>" <<<"$RUN_OUT"
  check "$what: the login page shows it as a banner" $?
  ui_get ""
  grep -qF "data-testid=\"config-banner\"><strong>$TEXT</strong>" <<<"$RUN_OUT"
  check "$what: the nodes page shows the banner" $?
  grep -qF '500 Internal Server Error' <<<"$RUN_OUT"; check "$what: ... and the node list's error" $?
  kill -0 "$UI_PID" 2>/dev/null; check "$what: the console keeps running" $?
  stop_ui
}

unconfigured "no ADMIN_AUTH_TOKEN" ADMIN_API_URL="$ADMIN_URL"
unconfigured "no ADMIN_API_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN"
unconfigured "empty ADMIN_AUTH_TOKEN" ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN=
unconfigured "neither"
fm_trim

# Both set: no banner, data.
start_ui ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1
! grep -qF "$TEXT" "$UI_LOG"; check "configured: the line is not logged" $?
ui_login; check "configured: log in" $?
ui_get api/admin/nodes
[ "$UI_CODE" = 200 ]; check "configured: /api/admin/nodes answers 200" $?
ui_get ""
! grep -qF "$TEXT" <<<"$RUN_OUT"; check "configured: no banner" $?
stop_ui

# The controller's own clients: the CLI and the daemon need ADMIN_AUTH_TOKEN.
run env -u ADMIN_AUTH_TOKEN ADMIN_URL="$ADMIN_URL" "$C" node list
expect_status 2 "CLI without ADMIN_AUTH_TOKEN"
expect_err "ADMIN_AUTH_TOKEN is required" "CLI says the token is required"
run curl -s -w ' %{http_code}' "$ADMIN_URL/api/admin/nodes"
expect_out '{"error":"unauthorized"} 401' "the admin API without a token: 401 unauthorized"
run env -u ADMIN_AUTH_TOKEN TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/s2" CONTROLLER_LISTEN=127.0.0.1:0 \
  ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 "$C"
expect_status 2 "controller without ADMIN_AUTH_TOKEN"
expect_err_has 'ADMIN_AUTH_TOKEN is required: the admin API never runs without authentication' "daemon names the setting"
stop_controller
fm_finish
