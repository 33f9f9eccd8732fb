#!/usr/bin/env bash
# Attack: a state directory other users can write. STATE_DIR holds the
# keys and the controller's database; a directory left 0777 (or a database
# created 0644 under a lax umask) lets another local user read the keys or
# swap files under the daemon. The daemons narrow what they own to 0700
# (directories) and 0600 (keys, the database) with a warn line, and refuse
# to start on such a directory owned by someone else.
. "$(dirname "$0")/../e2e/lib.sh"

umask 022
state="$E2E_TMP/ctl"
mkdir -p "$state" && chmod 777 "$state"
start_controller ctl
check "the controller starts on its own open STATE_DIR" $?
expect_file_mode "$state" 700 "STATE_DIR is narrowed"
grep -qF "level=warn msg=\"permissions narrowed\" path=$state what=directory from=0777 to=0700" "$CTL_LOG"
check "and says so" $?
expect_file_mode "$state/controller.db" 600 "the database is created private"
expect_file_mode "$state/ca/ca-1.key" 600 "the CA key is private"
stop_controller
chmod 644 "$state/controller.db" "$state/ca/ca-1.key"
chmod 755 "$state/ca"
start_controller ctl
check "the controller restarts" $?
expect_file_mode "$state/controller.db" 600 "a 0644 database is narrowed"
expect_file_mode "$state/ca/ca-1.key" 600 "a 0644 CA key is narrowed"
expect_file_mode "$state/ca" 700 "the CA directory is narrowed"

token="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
mkdir -p "$E2E_TMP/agent-dc1" && chmod 777 "$E2E_TMP/agent-dc1"
start_agent connector dc1 ENROLLMENT_TOKEN="$token"
check "the connector starts on its own open STATE_DIR" $?
expect_file_mode "$AGENT_STATE" 700 "the agent's STATE_DIR is narrowed"
wait_for_state ONLINE 15; check "and comes online" $?
expect_file_mode "$AGENT_STATE/key.pem" 600 "its key is private"
stop_agent
chmod 644 "$AGENT_STATE/key.pem"
start_agent connector dc1
wait_for_state ONLINE 15; check "the connector restarts" $?
expect_file_mode "$AGENT_STATE/key.pem" 600 "a 0644 agent key is narrowed on load"
stop_agent
stop_controller

# Someone else's open directory: refused (needs root to give one away).
if [ "$(id -u)" = 0 ]; then
  other="$E2E_TMP/other"
  mkdir -p "$other" && chmod 777 "$other" && chown 65534:65534 "$other"
  chmod 755 "$E2E_TMP"
  run timeout 10 env TRUST_DOMAIN=example.org STATE_DIR="$other" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=off ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
    "$ZTR_TEST_BIN/controller"
  [ "$RUN_STATUS" -ne 0 ] && [ "$RUN_STATUS" -ne 124 ]
  check "a foreign open STATE_DIR is refused (exit $RUN_STATUS)" $?
  expect_err_has "has mode 0777 and belongs to uid 65534, not to this process" "the refusal says why"
  expect_file_mode "$other" 777 "and it is left as it was"
else
  echo "  (not root: the foreign-directory case is not run)"
fi
finish
