#!/usr/bin/env bash
# CONTROLLER_ADDR by host name and as a list. The agents run in a mount
# namespace of their own whose /etc/hosts names ctl.ztr.test and whose
# resolv.conf points at 127.0.0.1 (nothing answers there), so every lookup
# stays on this machine: a name from the hosts file resolves, any other
# fails at once. Shows: enrollment and ONLINE through a name; a lookup
# failure named with the host; the name looked up again on every reconnect
# (the hosts file changes under a running agent); a list whose first
# controller is down, moved through by the reconnect worker; a malformed
# entry refused at start with the key named.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
if ! unshare -m true 2>/dev/null; then
  echo "unshare -m is not available (run as root): cannot give the agents their own /etc/hosts" >&2
  exit 1
fi
start_controller ctl || exit 1
CTL_PORT=${CTL_ADDR##*:}
echo "nameserver 127.0.0.1" >"$T/resolv.conf"

# start_named ROLE NAME HOSTS_FILE [VAR=value ...]: start_agent, but inside
# a mount namespace whose /etc/hosts is HOSTS_FILE.
start_named() {
  local role="$1" name="$2" hosts="$3" i; shift 3
  agent_env "$role" "$name" "$@"
  unshare -m sh -c 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf &&
    shift && exec env "$@"' "$hosts" "$T/resolv.conf" "${AGENT_ENV[@]}" \
    "$ZTR_TEST_BIN/$role" >>"$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
  E2E_PIDS+=("$AGENT_PID")
  for ((i = 0; i < 200; i++)); do
    if grep -qF 'msg="agent started"' "$AGENT_LOG" 2>/dev/null; then
      AGENT_HEALTH_URL="http://127.0.0.1:$(grep -F 'msg="agent started"' "$AGENT_LOG" |
        tail -1 | tr ' ' '\n' | sed -n 's/^health_port=//p')"
      return 0
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# ---- a name from the hosts file ------------------------------------------------------
printf '127.0.0.1 localhost\n127.0.0.1 ctl.ztr.test\n' >"$T/hosts.ok"
start_named tunneler byname "$T/hosts.ok" CONTROLLER_ADDR="ctl.ztr.test:$CTL_PORT" \
  ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name byname)"
check "an agent with CONTROLLER_ADDR=ctl.ztr.test:PORT starts" $?
wait_for_state ONLINE 20; check "it enrolls and goes ONLINE through the name" $?
[ "$(json_value address)" = "ctl.ztr.test:$CTL_PORT" ]
check "/health names the controller as configured" $?
stop_agent

# ---- a name nobody knows: the failure names the host -------------------------------
start_named tunneler lost "$T/hosts.ok" CONTROLLER_ADDR="nowhere.ztr.test:$CTL_PORT" \
  ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name lost)"
check "an agent with an unknown controller name starts" $?
wait_for_line "$AGENT_LOG" 'msg="control-plane connection failed"' 10
grep -F 'msg="control-plane connection failed"' "$AGENT_LOG" | grep -qF 'reason="resolve nowhere.ztr.test:'
check "the failure names the host it could not resolve" $?
grep -F 'msg="reconnect scheduled"' "$AGENT_LOG" | grep -qF 'reason="resolve nowhere.ztr.test:'
check "and the reconnect worker retries it with backoff" $?
stop_agent

# ---- looked up again on every attempt ----------------------------------------------
# The name first points where no controller listens (127.0.0.2), then the
# hosts file is rewritten in place under the running agent.
printf '127.0.0.1 localhost\n127.0.0.2 ctl.ztr.test\n' >"$T/hosts.moving"
start_named tunneler moving "$T/hosts.moving" CONTROLLER_ADDR="ctl.ztr.test:$CTL_PORT" \
  ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name moving)" \
  RECONNECT_MIN_DELAY=100ms RECONNECT_MAX_DELAY=200ms
check "an agent whose controller name points elsewhere starts" $?
wait_for_line "$AGENT_LOG" "msg=\"controller resolved\" controller=ctl.ztr.test:$CTL_PORT address=127.0.0.2:$CTL_PORT" 10
check "it dials the address the name has now" $?
wait_for_line "$AGENT_LOG" "controller=ctl.ztr.test:$CTL_PORT reason=\"connect: connection refused\"" 10
check "which refuses the connection" $?
printf '127.0.0.1 localhost\n127.0.0.1 ctl.ztr.test\n' >"$T/hosts.moving"
wait_for_state ONLINE 20; check "once the name moves, the next attempt reaches the controller" $?
grep -qF "msg=\"controller resolved\" controller=ctl.ztr.test:$CTL_PORT address=127.0.0.1:$CTL_PORT" "$AGENT_LOG"
check "through the address looked up again" $?
stop_agent

# ---- several controllers -----------------------------------------------------------
DEAD="127.0.0.1:$(free_port)"
start_named connector listed "$T/hosts.ok" CONTROLLER_ADDR="$DEAD, ctl.ztr.test:$CTL_PORT" \
  ENROLLMENT_TOKEN="$(ctl token create --role connector --name listed --address 127.0.0.1)" \
  RECONNECT_MIN_DELAY=100ms RECONNECT_MAX_DELAY=200ms
check "an agent with two controllers, the first down, starts" $?
wait_for_state ONLINE 20; check "it moves on to the second and goes ONLINE" $?
grep -qF "controller=$DEAD reason=\"connect: connection refused\"" "$AGENT_LOG"
check "the first was tried" $?
grep -qF "msg=\"next controller\" controller=ctl.ztr.test:$CTL_PORT index=2 of=2" "$AGENT_LOG"
check "the log says which controller is next" $?
stop_agent

# ---- malformed lists are refused at start -------------------------------------------
for bad in "ctl_1.example.org:7443" "127.0.0.1:7443,,127.0.0.2:7443" "ctl.example.org"; do
  run_agent tunneler bad CONTROLLER_ADDR="$bad" ENROLLMENT_TOKEN=x
  expect_status 2 "CONTROLLER_ADDR=\"$bad\" is refused"
  grep -qF "CONTROLLER_ADDR" <<<"$RUN_ERR"; check "the error names CONTROLLER_ADDR" $?
done
finish
