#!/usr/bin/env bash
# A crash (kill -9) of the connector at each durable write of an allowlist
# apply (allowlist_save: the temporary's fsync, its rename over
# allowlist.json, the directory's fsync), and just after the rename. Started
# again with its controller out of reach, the connector must enforce the
# list it kept (fail-static): the old version or the new one, whole (it
# parses, and /health reports that version and its tunnelers), never a torn
# one, and the tunneler allowed by both still gets through it.
. "$(dirname "$0")/fault_lib.sh"
FAULT_RUNS=0
T="$E2E_TMP"
start_controller ctl || exit 1
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
ctl resource add web --connector dc1 >/dev/null
DC1_TOKEN=$(ctl token create --role connector --name dc1 --address 127.0.0.1)
DC1_LISTEN="127.0.0.1:$(free_port)"
ARM="$T/armed"
# dc1 [VAR=value...]: the connector, on the same data port every start.
dc1() { start_agent connector dc1 ENROLLMENT_TOKEN="$DC1_TOKEN" RESOURCES="web=127.0.0.1:$ECHO_PORT" \
  CONNECTOR_LISTEN="$DC1_LISTEN" "$@"; }
dc1 || exit 1
DC1_PID=$AGENT_PID
wait_for_state ONLINE 20 || exit 1
DC1_STATE=$AGENT_STATE
ctl allow --tunneler laptop --resource web >/dev/null
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=web" SOCKS5_LISTEN=off
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
wait_through "127.0.0.1:$FWD"; check "laptop reaches web through dc1" $?
stop_agent "$DC1_PID" 2>/dev/null

file_version() { sed -n 's/.*"version":\([0-9]*\).*/\1/p' "$DC1_STATE/allowlist.json"; }
GRANTS=0

# ---- how many durable writes an apply makes ------------------------------------------
count_apply() { # OP: sets WRITES
  local path; [ "$1" = rename ] && path=allowlist.json || path=agent-dc1
  rm -f "$ARM"
  fault_trace_env "$1" "$path"
  FAULT_ENV+=(ZTR_FAULT_WHILE="$ARM")
  dc1 "${FAULT_ENV[@]}"; DC1_PID=$AGENT_PID
  wait_for_state ONLINE 20 && wait_for_line "$AGENT_LOG" 'msg="allowlist received"' 10
  touch "$ARM"
  GRANTS=$((GRANTS + 1))
  ctl allow --tunneler "laptop-$GRANTS" --resource web >/dev/null
  wait_for_line "$AGENT_LOG" "msg=\"allowlist received\" version=" 10
  sleep 0.5
  rm -f "$ARM"
  stop_agent "$DC1_PID"
  WRITES=$(fault_count)
}
count_apply rename; RENAMES=$WRITES
[ "$RENAMES" -ge 1 ]; check "an apply renames $RENAMES time(s)" $?
count_apply fsync; FSYNCS=$WRITES
[ "$FSYNCS" -ge 2 ]; check "an apply fsyncs $FSYNCS times" $?

crash_at() { # OP N ACTION
  local before after loaded
  rm -f "$ARM"
  fault_env "$1" "$3" "$([ "$1" = rename ] && echo allowlist.json || echo agent-dc1)" "$2" 1 "$ARM"
  dc1 "${FAULT_ENV[@]}"; DC1_PID=$AGENT_PID
  wait_for_state ONLINE 20 && wait_for_line "$AGENT_LOG" 'msg="allowlist received"' 10
  before=$(file_version)
  touch "$ARM"
  GRANTS=$((GRANTS + 1))
  ctl allow --tunneler "laptop-$GRANTS" --resource web >/dev/null
  wait_agent_exit 10 "$DC1_PID"
  rm -f "$ARM"
  [ "$AGENT_STATUS" = 137 ]; check "$1 $2 $3: killed there (status $AGENT_STATUS)" $?
  after=$(file_version)
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$DC1_STATE/allowlist.json" 2>/dev/null
  check "$1 $2 $3: allowlist.json is whole (parses)" $?
  [ "$after" = "$before" ] || [ "$after" = $((before + 1)) ]
  check "$1 $2 $3: the old (v$before) or the new list (v$after)" $?
  # Fail-static: the controller out of reach, the kept list is enforced.
  dc1 CONTROLLER_ADDR=127.0.0.1:9; DC1_PID=$AGENT_PID
  wait_for_line "$AGENT_LOG" 'msg="allowlist loaded from disk"' 10
  loaded=$(grep -F 'msg="allowlist loaded from disk"' "$AGENT_LOG" | sed -n 's/.* version=\([0-9]*\).*/\1/p')
  [ "$loaded" = "$after" ]; check "$1 $2 $3: the restarted connector enforces v$after (loaded v$loaded)" $?
  wait_through "127.0.0.1:$FWD"; check "$1 $2 $3: laptop still gets through (fail-static)" $?
  stop_agent "$DC1_PID"
  ! ls "$DC1_STATE"/allowlist.json.tmp.* >/dev/null 2>&1; check "$1 $2 $3: no temporary left" $?
}
for ((n = 1; n <= RENAMES; n++)); do crash_at rename "$n" crash; crash_at rename "$n" crash-after; done
for ((n = 1; n <= FSYNCS; n++)); do crash_at fsync "$n" crash; done
stop_agent "$LAPTOP_PID"
finish
