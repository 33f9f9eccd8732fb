#!/usr/bin/env bash
# Failure mode 6.2 (the document: a web UI started without ADMIN_API_URL or
# ADMIN_AUTH_TOKEN logs `ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured`).
# ztr has no web UI, so that text cannot appear. What its admin client (the
# CLI) and the daemon do instead is checked here; if all of it holds, the
# mode is reported pending with that explanation, otherwise it fails.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 6.2 "Missing ADMIN_API_URL or ADMIN_AUTH_TOKEN" "ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured"
C="$ZTR_TEST_BIN/controller"
start_controller ctl || exit 1

# The CLI without ADMIN_AUTH_TOKEN: refuses before any request, exit 2.
run env -u ADMIN_AUTH_TOKEN ADMIN_URL="$ADMIN_URL" "$C" node list
expect_status 2 "CLI without ADMIN_AUTH_TOKEN"
expect_err "ADMIN_AUTH_TOKEN is required" "CLI says the token is required"
run env ADMIN_AUTH_TOKEN= ADMIN_URL="$ADMIN_URL" "$C" node list
expect_status 2 "CLI with an empty ADMIN_AUTH_TOKEN"
expect_err "ADMIN_AUTH_TOKEN is required" "an empty token is missing too"
# A client that sends no token gets 401 from the API.
run curl -s -w ' %{http_code}' "$ADMIN_URL/api/admin/nodes"
expect_out '{"error":"unauthorized"} 401' "the admin API without a token: 401 unauthorized"

# The CLI reads ADMIN_URL, not ADMIN_API_URL; without ADMIN_URL it uses
# http://127.0.0.1:8080 (ADMIN_API_URL is ignored).
run env -u ADMIN_URL ADMIN_API_URL="$ADMIN_URL" "$C" node list
if ss -Htln 'sport = :8080' | grep -q .; then
  echo "  (127.0.0.1:8080 is in use here: not checking the default URL's error)"
else
  expect_status 1 "CLI without ADMIN_URL (ADMIN_API_URL set) goes to the default"
  expect_err "error: GET http://127.0.0.1:8080/api/admin/nodes: connect: connection refused" \
    "the error names the default URL"
fi
run env ADMIN_URL= "$C" node list
[ "$RUN_STATUS" -ne 2 ]; check "an empty ADMIN_URL is the default, not a configuration error" $?

# The daemon without ADMIN_AUTH_TOKEN: refuses to start, exit 2 (configuration).
run env -u ADMIN_AUTH_TOKEN TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/s2" CONTROLLER_LISTEN=127.0.0.1:0 \
  ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 "$C"
expect_status 2 "controller without ADMIN_AUTH_TOKEN"
expect_err_has 'ADMIN_AUTH_TOKEN is required: the admin API never runs without authentication' "daemon names the setting"
! grep -qF "ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured" <<<"$RUN_ERR"; check "the document's text is not used by ztr" $?
stop_controller

[ "$E2E_FAILURES" -eq 0 ] || fm_finish
fm_pending "no web UI in ztr; the CLI reads ADMIN_URL (default http://127.0.0.1:8080, ADMIN_API_URL ignored); no token: 'ADMIN_AUTH_TOKEN is required' (CLI exit 2, daemon exit 2), API 401"
