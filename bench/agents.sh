#!/usr/bin/env bash
# Agent footprint: a release-build controller, connector and tunneler on
# loopback; once both agents are ONLINE, their RSS and CPU while idle
# (heartbeats every 10 s) over a fixed window. Prints a markdown section.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bin"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
window="${AGENT_IDLE_SECONDS:-20}"
token=bench-admin-token-0123456789
env TRUST_DOMAIN=example.org STATE_DIR="$work/ctl" ADMIN_AUTH_TOKEN="$token" \
  CONTROLLER_LISTEN=127.0.0.1:0 ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 \
  HEARTBEAT_INTERVAL=10s "$bin/controller" >"$work/ctl.log" 2>&1 &
pids+=($!)
for _ in $(seq 400); do grep -q 'controller started' "$work/ctl.log" && break; sleep 0.05; done
field() { grep -F "$1" "$2" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ctl_port=$(field 'controller started' "$work/ctl.log" control_port)
export ADMIN_URL="http://127.0.0.1:$(field 'controller started' "$work/ctl.log" admin_port)" ADMIN_AUTH_TOKEN="$token"
start_agent() { # role name [extra env]
  local role="$1" name="$2" allow=(); shift 2
  # A connector's certificate names the IPs its token allows.
  [ "$role" = connector ] && allow=(--address 127.0.0.1)
  env ENROLLMENT_TOKEN="$("$bin/controller" token create --role "$role" --name "$name" "${allow[@]}")" \
    CONTROLLER_ADDR="127.0.0.1:$ctl_port" CONTROLLER_CA="$work/ctl/ca/ca-1.crt" \
    TRUST_DOMAIN=example.org STATE_DIR="$work/$name" NODE_NAME="$name" \
    HEALTH_LISTEN=127.0.0.1:0 "$@" "$bin/$role" >"$work/$name.log" 2>&1 &
  pids+=($!)
  echo $!
}
conn_pid=$(start_agent connector dc1 CONNECTOR_LISTEN="127.0.0.1:$((20000 + RANDOM % 20000))")
tun_pid=$(start_agent tunneler laptop SOCKS5_LISTEN=127.0.0.1:0)
for _ in $(seq 200); do
  grep -q 'control-plane stream connected' "$work/dc1.log" 2>/dev/null &&
    grep -q 'control-plane stream connected' "$work/laptop.log" 2>/dev/null && break
  sleep 0.05
done
sleep 1
for p in "$conn_pid" "$tun_pid"; do
  kill -0 "$p" 2>/dev/null && continue
  echo "an agent exited before the measurement:" >&2
  tail -n 3 "$work"/dc1.log "$work"/laptop.log >&2
  exit 1
done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
c0=$(cpu "$conn_pid"); t0=$(cpu "$tun_pid")
sleep "$window"
c1=$(cpu "$conn_pid"); t1=$(cpu "$tun_pid")
pct() { awk -v d="$1" -v t="$ticks" -v w="$window" 'BEGIN { printf "%.2f", 100 * d / t / w }'; }
echo "| agent | RSS (KiB) | CPU while idle ($window s, 10 s heartbeats) |"
echo "|---|---|---|"
echo "| connector | $(rss "$conn_pid") | $(pct $((c1 - c0))) % |"
echo "| tunneler | $(rss "$tun_pid") | $(pct $((t1 - t0))) % |"
