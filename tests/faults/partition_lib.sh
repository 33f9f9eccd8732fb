# shellcheck shell=bash
# Network partitions between real daemons: the controller, the connector
# (with its resource) and the tunneler each in a network namespace of
# their own, joined by veth pairs on 10.77.x.0/24 addresses that exist only
# inside those namespaces; a partition is a veth link set down. Needs root
# (ip netns); skips otherwise. The namespaces go in the exit trap, even on
# failure. Nothing here sends traffic to any other address.
. "$(dirname "${BASH_SOURCE[0]}")/fault_lib.sh"

NS_CTL="ztrf-ctl-$$" NS_CON="ztrf-con-$$" NS_TUN="ztrf-tun-$$"
CTL_IP_FOR_CON=10.77.1.1 CON_IP_CTL=10.77.1.2   # controller <-> connector
CTL_IP_FOR_TUN=10.77.2.1 TUN_IP_CTL=10.77.2.2   # controller <-> tunneler
CON_IP_DATA=10.77.3.1 TUN_IP_DATA=10.77.3.2     # connector <-> tunneler (data plane)
CTL_PORT=7443 ADMIN_PORT=8080 CTL_HEALTH_PORT=9090

partition_cleanup() {
  for p in "${E2E_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for ns in "$NS_CTL" "$NS_CON" "$NS_TUN"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$E2E_TMP"
}
trap partition_cleanup EXIT

# netns_setup: the three namespaces and their links; false (after a SKIP
# line) where this machine cannot make them.
netns_setup() {
  if [ "$(id -u)" -ne 0 ] || ! ip netns add "$NS_CTL" 2>/dev/null; then
    echo "  SKIP: network namespaces need root and ip netns"; return 1
  fi
  ip netns add "$NS_CON" && ip netns add "$NS_TUN" || return 1
  local ns
  for ns in "$NS_CTL" "$NS_CON" "$NS_TUN"; do ip -n "$ns" link set lo up || return 1; done
  # veth NAME-A NS-A IP-A NAME-B NS-B IP-B
  veth() {
    ip -n "$2" link add "$1" type veth peer name "$4" netns "$5" &&
      ip -n "$2" addr add "$3/24" dev "$1" && ip -n "$5" addr add "$6/24" dev "$4" &&
      ip -n "$2" link set "$1" up && ip -n "$5" link set "$4" up
  }
  veth v-ctl-con "$NS_CTL" "$CTL_IP_FOR_CON" v-con-ctl "$NS_CON" "$CON_IP_CTL" &&
    veth v-ctl-tun "$NS_CTL" "$CTL_IP_FOR_TUN" v-tun-ctl "$NS_TUN" "$TUN_IP_CTL" &&
    veth v-con-tun "$NS_CON" "$CON_IP_DATA" v-tun-con "$NS_TUN" "$TUN_IP_DATA"
}

# link_down NS DEV / link_up NS DEV: one end of a veth pair (the other end
# loses its carrier with it).
link_down() { ip -n "$1" link set "$2" down; }
link_up() { ip -n "$1" link set "$2" up; }

# in_ns NS CMD...: runs CMD inside NS. nsenter, not "ip netns exec", which
# forks. Daemons are started with nsenter itself, not through this
# function, so that $! is the daemon (its /proc/PID/fd, its SIGTERM).
in_ns() { local ns="$1"; shift; nsenter --net="/run/netns/$ns" -- "$@"; }
nctl() { in_ns "$NS_CTL" env ADMIN_URL="http://127.0.0.1:$ADMIN_PORT" \
  ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" "$ZTR_TEST_BIN/controller" "$@"; }

# ns_controller_start: the controller in NS_CTL; sets CTL_PID, CTL_LOG,
# CTL_STATE, CTL_HEALTH ("ip netns exec"ed curl target).
ns_controller_start() {
  CTL_STATE="$E2E_TMP/ctl"; CTL_LOG="$E2E_TMP/ctl.log"
  mkdir -p "$CTL_STATE"
  nsenter --net="/run/netns/$NS_CTL" -- env TRUST_DOMAIN=example.org STATE_DIR="$CTL_STATE" \
    CONTROLLER_LISTEN="0.0.0.0:$CTL_PORT" CONTROLLER_NAMES="$CTL_IP_FOR_CON,$CTL_IP_FOR_TUN" \
    ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" HEALTH_LISTEN="127.0.0.1:$CTL_HEALTH_PORT" \
    HEARTBEAT_INTERVAL=300ms ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" "$@" \
    "$ZTR_TEST_BIN/controller" >>"$CTL_LOG" 2>&1 &
  CTL_PID=$!; E2E_PIDS+=("$CTL_PID")
  wait_for_line "$CTL_LOG" 'msg="controller started"' 20 ||
    { echo "controller did not start:" >&2; tail -5 "$CTL_LOG" >&2; return 1; }
}

# ns_agent_start ROLE NAME NS CONTROLLER-IP [VAR=value ...]: an agent in NS
# (agent_env's settings, the controller at CONTROLLER-IP); sets AGENT_PID,
# AGENT_LOG, AGENT_STATE, AGENT_HEALTH_PORT.
ns_agent_start() {
  local role="$1" name="$2" ns="$3" ip="$4" i; shift 4
  AGENT_HEALTH_URL=""   # inside NS: in_ns NS curl http://127.0.0.1:$AGENT_HEALTH_PORT
  CTL_ADDR="$ip:$CTL_PORT"
  agent_env "$role" "$name" "$@"
  nsenter --net="/run/netns/$ns" -- env "${AGENT_ENV[@]}" "$ZTR_TEST_BIN/$role" \
    >>"$AGENT_LOG" 2>&1 &
  AGENT_PID=$!; E2E_PIDS+=("$AGENT_PID")
  for ((i = 0; i < 400; i++)); do
    if grep -qF 'msg="agent started"' "$AGENT_LOG" 2>/dev/null; then
      AGENT_HEALTH_PORT="$(grep -F 'msg="agent started"' "$AGENT_LOG" | tail -1 |
        tr ' ' '\n' | sed -n 's/^health_port=//p')"
      return 0
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "$role $name did not start:" >&2; tail -5 "$AGENT_LOG" >&2
  return 1
}

# node_status NAME: the controller's status of node NAME (ONLINE/OFFLINE).
node_status() {
  nctl node list 2>/dev/null | grep -F " name=$1 " | tr ' ' '\n' | sed -n 's/^status=//p'
}

# wait_node_status NAME STATUS SECONDS
wait_node_status() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [ "$(node_status "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# fd_count PID: open descriptors of a process.
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
