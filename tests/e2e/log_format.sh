#!/usr/bin/env bash
# LOG_FORMAT: logfmt (the default, unchanged) or json, one object per line
# with the same keys, for the controller and the agents; a bad value is a
# configuration error; under systemd (JOURNAL_STREAM naming stderr) each
# line starts with its syslog priority so journald keeps the level.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"

# json_lines FILE: 0 when every line of FILE is one JSON object whose first
# keys are ts, level, msg; prints the offending line otherwise.
json_lines() {
  python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        o = json.loads(line)
    except ValueError:
        print(line, end=""); sys.exit(1)
    if not isinstance(o, dict) or list(o)[:3] != ["ts", "level", "msg"]:
        print(line, end=""); sys.exit(1)
PY
}
# jfield FILE MSG KEY: KEY of the last line whose msg is MSG, as JSON.
jfield() {
  python3 - "$@" <<'PY'
import json, sys
hit = None
for line in open(sys.argv[1], encoding="utf-8"):
    o = json.loads(line)
    if o.get("msg") == sys.argv[2]:
        hit = o
print(json.dumps(hit.get(sys.argv[3])) if hit else "")
PY
}

# ---- the controller in JSON ------------------------------------------------------
LOG="$T/ctl.json.log"
start_json_controller "$LOG" "$T/ctl" HEALTH_LISTEN=127.0.0.1:0 HEARTBEAT_INTERVAL=300ms
out="$(json_lines "$LOG")"; check "every controller line is one JSON object: ts, level, msg first ($out)" $?
control_port="$(jfield "$LOG" "controller started" control_port)"
[[ "$control_port" =~ ^[0-9]+$ ]]; check "an integer field is a JSON number (control_port=$control_port)" $?
admin_port="$(jfield "$LOG" "controller started" admin_port)"
export ADMIN_URL="http://127.0.0.1:$admin_port" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN"
CTL_ADDR="127.0.0.1:$control_port" CTL_STATE="$T/ctl"

# ---- an agent in JSON --------------------------------------------------------------
token="$(ctl token create --role tunneler --name laptop)"
agent_env tunneler laptop ENROLLMENT_TOKEN="$token" LOG_FORMAT=json
env "${AGENT_ENV[@]}" "$ZTR_TEST_BIN/tunneler" 2>"$AGENT_LOG" &
AGENT_PID=$!
E2E_PIDS+=("$AGENT_PID")
wait_for_line "$AGENT_LOG" '"msg":"agent started"' 20; check "the tunneler starts with LOG_FORMAT=json" $?
wait_for_line "$AGENT_LOG" 'control-plane stream connected' 20; check "and connects" $?
out="$(json_lines "$AGENT_LOG")"; check "every tunneler line is one JSON object ($out)" $?
! grep -qF "$token" "$AGENT_LOG" "$LOG"; check "the enrollment token reaches neither log" $?
stop_agent
kill -TERM "$CTL_PID"; wait "$CTL_PID"
[ $? -eq 0 ]; check "the controller stops cleanly" $?
out="$(json_lines "$LOG")"; check "down to its last line ($out)" $?
[ "$(jfield "$LOG" "controller stopped" level)" = '"info"' ]; check "the stop line is there, level info" $?

# ---- the default, the flag, a bad value ---------------------------------------------
run env -u ADMIN_AUTH_TOKEN TRUST_DOMAIN=example.org STATE_DIR="$T/x" "$ZTR_TEST_BIN/controller"
expect_status 2 "no ADMIN_AUTH_TOKEN"
[[ "$RUN_ERR" == ts=*' level=error msg="controller failed to start" error='* ]]
check "logfmt stays the default" $?
run env TRUST_DOMAIN=example.org STATE_DIR="$T/x" "$ZTR_TEST_BIN/connector" --log-format=json
expect_status 2 "a connector without its settings"
python3 -c 'import json,sys; o=json.loads(sys.argv[1]); assert o["level"]=="error" and o["msg"]=="agent failed to start" and "error" in o' "$RUN_ERR"
check "--log-format=json: the start-up error is a JSON line" $?
run env TRUST_DOMAIN=example.org STATE_DIR="$T/x" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" LOG_FORMAT=xml "$ZTR_TEST_BIN/controller"
expect_status 2 "LOG_FORMAT=xml is a configuration error"
expect_err_has 'env: LOG_FORMAT: use logfmt or json' "naming the key and its origin"
printf 'log_format: yaml-is-not-a-format\n' >"$T/t.yaml"
run "$ZTR_TEST_BIN/tunneler" --config "$T/t.yaml"
expect_status 2 "a bad log_format in YAML"
expect_err_has "$T/t.yaml:1: log_format: use logfmt or json" "names file:line"

# ---- journald: the priority before each line ----------------------------------------
# JOURNAL_STREAM names stderr's device and inode, as systemd sets it.
: >"$T/journal"
JOURNAL_STREAM="$(stat -c '%d:%i' "$T/journal")" ADMIN_AUTH_TOKEN= TRUST_DOMAIN=example.org STATE_DIR="$T/x" \
  "$ZTR_TEST_BIN/controller" 2>>"$T/journal"
grep -q '^<3>ts=[^ ]* level=error msg="controller failed to start"' "$T/journal"
check "under the journal an error line starts with <3> ($(head -c 200 "$T/journal"))" $?
: >"$T/journal"
JOURNAL_STREAM="$(stat -c '%d:%i' "$T/journal")" ADMIN_AUTH_TOKEN= TRUST_DOMAIN=example.org STATE_DIR="$T/x" \
  LOG_FORMAT=json "$ZTR_TEST_BIN/tunneler" 2>>"$T/journal"
grep -q '^<3>{"ts":' "$T/journal"; check "a JSON line gets the same prefix" $?
# Inherited by a process whose stderr is elsewhere: no prefix.
: >"$T/journal" ; : >"$T/other"
JOURNAL_STREAM="$(stat -c '%d:%i' "$T/other")" ADMIN_AUTH_TOKEN= TRUST_DOMAIN=example.org STATE_DIR="$T/x" \
  "$ZTR_TEST_BIN/controller" 2>>"$T/journal"
grep -q '^ts=' "$T/journal"; check "JOURNAL_STREAM of another file: no prefix" $?
finish
