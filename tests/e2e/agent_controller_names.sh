#!/usr/bin/env bash
# CONTROLLER_ADDR by host name and as a list. The agents run in a mount
# namespace of their own whose /etc/hosts names ctl.ztr.test and whose
# resolv.conf points at 127.0.0.1 (nothing answers there), so every lookup
# stays on this machine: a name from the hosts file resolves, any other
# fails at once. Shows: enrollment and ONLINE through a name; a lookup
# failure named with the host; the name looked up again on every reconnect
# (the hosts file changes under a running agent); a list whose first
# controller is down, moved through by the reconnect worker; a malformed
# entry refused at start with the key named; a name with several addresses,
# the first dead, moved through address by address; the controller's
# certificate naming CONTROLLER_NAMES beside its SPIFFE ID.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
if ! unshare -m true 2>/dev/null; then
  echo "unshare -m is not available (run as root): cannot give the agents their own /etc/hosts" >&2
  exit 1
fi
start_controller ctl CONTROLLER_NAMES="ctl.ztr.test, ctl-2.ztr.test,127.0.0.5" || exit 1
CTL_PORT=${CTL_ADDR##*:}
grep -F 'msg="controller started"' "$CTL_LOG" | grep -qF 'control_names=127.0.0.1,127.0.0.5,ctl.ztr.test,ctl-2.ztr.test'
check "the controller logs the names its certificate carries" $?
SANS=$(openssl s_client -connect "$CTL_ADDR" -alpn ztr-ctl/1 </dev/null 2>/dev/null |
  openssl x509 -noout -ext subjectAltName 2>/dev/null | tr -d ' \n')
for want in "URI:spiffe://example.org/controller" "DNS:ctl.ztr.test" "DNS:ctl-2.ztr.test" \
  "IPAddress:127.0.0.1" "IPAddress:127.0.0.5"; do
  grep -qF "$want" <<<"$SANS"; check "the controller's certificate carries $want" $?
done
run timeout 20 env TRUST_DOMAIN=example.org STATE_DIR="$T/bad" CONTROLLER_LISTEN=127.0.0.1:0 \
  ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=off ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
  CONTROLLER_NAMES="ctl.ztr.test,ctl_1.example.org" "$ZTR_TEST_BIN/controller"
expect_status 2 "CONTROLLER_NAMES with a name that is neither an IP nor a DNS name is refused"
expect_err_has 'env: CONTROLLER_NAMES: \"ctl_1.example.org\" is neither an IP address nor a DNS name' \
  "the error names CONTROLLER_NAMES and the entry"
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

# ---- a name with several addresses ------------------------------------------------------
# A controller on 127.0.0.3, and ctl.ztr.test with 127.0.0.2 (nothing
# listens) before 127.0.0.3 (glibc keeps that order: both are as near to
# the source address): the agent dials the first, then the name's next.
start_controller ctl3 CONTROLLER_LISTEN=127.0.0.3:0 || exit 1
CTL3_PORT=$(log_value "$CTL_LOG" control_port)
printf '127.0.0.1 localhost\n127.0.0.2 ctl.ztr.test\n127.0.0.3 ctl.ztr.test\n' >"$T/hosts.two"
start_named tunneler twoaddr "$T/hosts.two" CONTROLLER_ADDR="ctl.ztr.test:$CTL3_PORT" \
  ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name twoaddr)" \
  RECONNECT_MIN_DELAY=100ms RECONNECT_MAX_DELAY=200ms
check "an agent whose controller name has two addresses starts" $?
wait_for_state ONLINE 20; check "it goes ONLINE through the second address" $?
grep -qF "msg=\"controller resolved\" controller=ctl.ztr.test:$CTL3_PORT address=127.0.0.2:$CTL3_PORT addresses=2" "$AGENT_LOG"
check "the lookup found both addresses, the dead one first" $?
grep -qF "msg=\"next controller address\" controller=ctl.ztr.test:$CTL3_PORT address=127.0.0.3:$CTL3_PORT index=2 of=2" "$AGENT_LOG"
check "after the refusal it dials the name's next address" $?
stop_agent

# ---- malformed lists are refused at start -------------------------------------------
for bad in "ctl_1.example.org:7443" "127.0.0.1:7443,,127.0.0.2:7443" "ctl.example.org"; do
  run_agent tunneler bad CONTROLLER_ADDR="$bad" ENROLLMENT_TOKEN=x
  expect_status 2 "CONTROLLER_ADDR=\"$bad\" is refused"
  grep -qF "CONTROLLER_ADDR" <<<"$RUN_ERR"; check "the error names CONTROLLER_ADDR" $?
done
finish
