#!/usr/bin/env bash
# make demo: the whole system on loopback in a temp dir — a controller, a
# connector next to a sample HTTP resource, a tunneler with a port forward
# and a SOCKS5 server — then a request through each front end, every node's
# /health, the admin API's node list, and the web console (its URL and
# password). Ctrl-C stops everything and removes
# the temp dir. DEMO_HOLD=0 stops right after the requests (used by the tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${DEMO_BIN:-$root/build/bin}"
peer="$bin/../tests/tools/tcp_peer"
hold="${DEMO_HOLD:-1}"
work="$(mktemp -d /tmp/ztr-demo.XXXXXX)"
pids=()

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "== stopping"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  echo "stopped; removed $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
# A port below the kernel's ephemeral range that nothing uses now.
free_port() {
  local port used
  used="$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://')"
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 12000))
    grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
  done
  echo $((20000 + RANDOM % 12000))
}
# field FILE MSG KEY: KEY=value from the last log line with msg="MSG".
field() { grep -F "msg=\"$2\"" "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
wait_line() { # FILE TEXT: up to 20 s
  for _ in $(seq 400); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1:" >&2; tail -5 "$1" >&2; return 1
}
start() { # NAME CMD...: background, log in $work/NAME.log
  local name="$1"; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

step "controller (state in $work/controller)"
token="demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export ADMIN_AUTH_TOKEN="$token"
start controller env TRUST_DOMAIN=example.org STATE_DIR="$work/controller" \
  CONTROLLER_LISTEN=127.0.0.1:0 ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 \
  ADMIN_AUTH_TOKEN="$token" "$bin/controller"
wait_line "$work/controller.log" 'msg="controller started"'
ctl_addr="127.0.0.1:$(field "$work/controller.log" "controller started" control_port)"
export ADMIN_URL="http://127.0.0.1:$(field "$work/controller.log" "controller started" admin_port)"
ctl_health="http://127.0.0.1:$(field "$work/controller.log" "controller started" health_port)"
echo "control plane $ctl_addr, admin API $ADMIN_URL"

step "sample resource: an HTTP server on loopback"
start resource "$peer" http 127.0.0.1:0
wait_line "$work/resource.log" "listening port="
res_port="$(sed -n 's/^listening port=//p' "$work/resource.log")"
echo "resource web = 127.0.0.1:$res_port"
"$bin/controller" resource add web --connector dc1 >/dev/null

agent_env=(CONTROLLER_ADDR="$ctl_addr" CONTROLLER_CA="$work/controller/ca/ca-1.crt"
  TRUST_DOMAIN=example.org HEALTH_LISTEN=127.0.0.1:0)

step "connector dc1 enrolls with a one-time token"
data_port=$(free_port)
start connector env "${agent_env[@]}" STATE_DIR="$work/dc1" NODE_NAME=dc1 \
  ENROLLMENT_TOKEN="$("$bin/controller" token create --role connector --name dc1 --address 127.0.0.1)" \
  CONNECTOR_LISTEN="127.0.0.1:$data_port" RESOURCES="web=127.0.0.1:$res_port" "$bin/connector"
wait_line "$work/connector.log" 'msg="data listener started"'
grep -F 'msg="enrolled"' "$work/connector.log" | sed 's/^/  /'

step "tunneler laptop enrolls, and is allowed to reach web"
fwd_port=$(free_port); socks_port=$(free_port)
while [ "$socks_port" = "$fwd_port" ]; do socks_port=$(free_port); done
"$bin/controller" allow --tunneler laptop --resource web >/dev/null
start tunneler env "${agent_env[@]}" STATE_DIR="$work/laptop" NODE_NAME=laptop \
  ENROLLMENT_TOKEN="$("$bin/controller" token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$fwd_port=web" SOCKS5_LISTEN="127.0.0.1:$socks_port" "$bin/tunneler"
wait_line "$work/tunneler.log" 'msg="connector list received"'
grep -F 'msg="enrolled"' "$work/tunneler.log" | sed 's/^/  /'

step "a request through the port forward: curl http://127.0.0.1:$fwd_port/"
curl -sS -m 10 "http://127.0.0.1:$fwd_port/"
step "a request through SOCKS5: curl --socks5-hostname 127.0.0.1:$socks_port http://web/"
curl -sS -m 10 --socks5-hostname "127.0.0.1:$socks_port" "http://web/"

step "what carried them (tunneler log)"
grep -F -e 'msg="data session opened"' "$work/tunneler.log" | sed 's/^/  /'

step "/health of each node"
echo "controller: $(curl -sS "$ctl_health/health")"
echo "connector:  $(curl -sS "http://127.0.0.1:$(field "$work/connector.log" "agent started" health_port)/health")"
echo "tunneler:   $(curl -sS "http://127.0.0.1:$(field "$work/tunneler.log" "agent started" health_port)/health")"

step "admin API: controller node list"
"$bin/controller" node list

step "web console (docs/CONSOLE.md)"
if [ -f "$root/ui/.next/BUILD_ID" ] && command -v node >/dev/null; then
  ui_password="demo-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  start console env ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN="$token" UI_PASSWORD="$ui_password" \
    UI_LISTEN="${DEMO_UI_LISTEN:-127.0.0.1:0}" NEXT_TELEMETRY_DISABLED=1 node "$root/ui/server.mjs"
  if wait_line "$work/console.log" 'msg="console started"'; then
    echo "console: $(field "$work/console.log" "console started" url)   password: $ui_password"
    curl -sS -o /dev/null -w 'console /login: HTTP %{http_code}\n' "$(field "$work/console.log" "console started" url)/login"
  fi
else
  echo "console not built (make ui builds it; make demo does)"
fi

if [ "$hold" = 1 ]; then
  step "running — Ctrl-C stops everything (logs in $work)"
  echo "try: curl http://127.0.0.1:$fwd_port/   or   curl --socks5-hostname 127.0.0.1:$socks_port http://web/"
  wait "${pids[0]}" || true
fi
