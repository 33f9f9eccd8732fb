# shellcheck shell=bash
# Helpers for scripts that run the web console (ui/server.mjs, built by
# `make ui`) beside the daemons of tests/e2e/lib.sh. Source after lib.sh.
UI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../ui" && pwd)"
UI_TEST_PASSWORD="ui-test-password-0123456789"

# ui_built: true when `make ui` has built the console.
ui_built() { [ -f "$UI_DIR/.next/BUILD_ID" ] && [ -d "$UI_DIR/node_modules/next" ]; }

# start_ui [VAR=value ...]: the console on a kernel-chosen loopback port with
# UI_TEST_PASSWORD and none of the caller's admin settings (pass
# ADMIN_API_URL=... ADMIN_AUTH_TOKEN=... to give them); stopped when the
# script exits. Sets UI_URL, UI_PID, UI_LOG (a new file for every start).
start_ui() {
  if ! ui_built; then
    echo "the console is not built: run make ui" >&2; return 1
  fi
  E2E_STARTS=$((${E2E_STARTS:-0} + 1))
  UI_LOG="$E2E_TMP/ui.$E2E_STARTS.log"
  env -u ADMIN_API_URL -u ADMIN_AUTH_TOKEN -u ADMIN_URL NEXT_TELEMETRY_DISABLED=1 \
    UI_LISTEN=127.0.0.1:0 UI_PASSWORD="$UI_TEST_PASSWORD" "$@" node "$UI_DIR/server.mjs" >>"$UI_LOG" 2>&1 &
  UI_PID=$!
  E2E_PIDS+=("$UI_PID")
  if ! wait_for_line "$UI_LOG" 'msg="console started"' 60; then
    echo "the console did not start:" >&2; tail -5 "$UI_LOG" >&2; return 1
  fi
  UI_URL="$(grep -F 'msg="console started"' "$UI_LOG" | tail -1 | tr ' ' '\n' | sed -n 's/^url=//p')"
}

# stop_ui: SIGTERM and wait.
stop_ui() { kill -TERM "$UI_PID" 2>/dev/null; wait "$UI_PID" 2>/dev/null; }

# ui_login: logs in with UI_TEST_PASSWORD; the session cookie is in $UI_JAR.
ui_login() {
  UI_JAR="$E2E_TMP/ui.cookies"
  curl -s -o /dev/null -w '%{http_code}' -c "$UI_JAR" -H "Origin: $UI_URL" -H 'Accept: application/json' \
    -H 'Content-Type: application/json' -d "{\"password\":\"$UI_TEST_PASSWORD\"}" "$UI_URL/api/session" | grep -qx 200
}

# ui_get PATH: GET $UI_URL/PATH with the session; like run (RUN_OUT is the
# body, and UI_CODE the status).
ui_get() {
  run curl -s -m 10 -b "$UI_JAR" -w '\n%{http_code}' "$UI_URL/$1"
  UI_CODE="${RUN_OUT##*$'\n'}"
  RUN_OUT="${RUN_OUT%$'\n'*}"
}
