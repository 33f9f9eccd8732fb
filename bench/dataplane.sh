#!/usr/bin/env bash
# Relay throughput: the same tcp_peer loads against one set of resources
# (sink, http, echo) on loopback, side by side in one run:
#   direct TCP   the client talks to the resource itself;
#   stunnel      a client + server stunnel pair, TLS 1.3 mutual TLS on P-256;
#   haproxy      a client + server HAProxy pair (one thread each), the same TLS;
#   ztr          a release-build controller, connector and tunneler (port forwards).
# Prints a markdown section. Everything stays on 127.0.0.0/8.
#
# Durations and sizes (environment):
#   DP_SECONDS (10)          default for the timed runs below
#   DP_TPUT_SECONDS          each throughput run          (DP_SECONDS)
#   DP_CONNECT_SECONDS       the new-connections run      (DP_SECONDS)
#   DP_STREAMS (8)           streams of the multi-stream throughput run
#   DP_CONCURRENCY (16)      connections in flight for bench-connect
#   DP_LAT_COUNT (10000)     64-byte round trips for bench-latency
#   DP_HOLD_COUNT (1000)     idle connections held through each relay
#   DP_HOLD_SECONDS (3)      how long they are held (RSS is sampled after 1 s)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bin"
peer="$root/build/tests/tools/tcp_peer"
secs="${DP_SECONDS:-10}"
tput_secs="${DP_TPUT_SECONDS:-$secs}"
conn_secs="${DP_CONNECT_SECONDS:-$secs}"
streams="${DP_STREAMS:-8}"
conc="${DP_CONCURRENCY:-16}"
lat_count="${DP_LAT_COUNT:-10000}"
hold_n="${DP_HOLD_COUNT:-1000}"
hold_secs="${DP_HOLD_SECONDS:-3}"
ticks=$(getconf CLK_TCK)

for f in "$bin/controller" "$bin/connector" "$bin/tunneler" "$peer"; do
  [ -x "$f" ] || { echo "missing $f: run make first" >&2; exit 1; }
done
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null ||
  { echo "stunnel not installed: run make deps" >&2; exit 1; }
stunnel_bin="$(command -v stunnel4 || command -v stunnel)"
command -v haproxy >/dev/null || { echo "haproxy not installed: run make deps" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # the agents are not our children (started from a subshell): poll
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

problems=() # lines for the "problems seen" list under the table
problem() { problems+=("$*"); }

# free_port: a loopback TCP port nothing listens on or uses right now.
free_port() {
  local port used
  used="$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://')"
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 20000))
    grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
  done
  return 1
}
# wait_listen PORT...: until every PORT accepts on loopback (10 s at most).
wait_listen() {
  local p ok
  for _ in $(seq 200); do
    ok=1
    for p in "$@"; do ss -Htln "sport = :$p" | grep -q . || { ok=0; break; }; done
    [ "$ok" = 1 ] && return 0
    sleep 0.05
  done
  return 1
}
# kv FILE KEY: the value of KEY=... in the last line of FILE that has it.
kv() { grep -o "\b$2=[^ ]*" "$1" 2>/dev/null | tail -1 | cut -d= -f2-; }
cpu_ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }
# busy_ticks: CPU ticks the whole machine spent busy; ours_ticks: those of
# this script, its children (waited-for ones included) and every process it
# started; the difference over a path's runs is load from somewhere else.
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
ours_ticks() {
  local p s
  s=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  for p in "${pids[@]}"; do
    [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$s"
}
rss_kib() { local p s=0; for p in "$@"; do s=$((s + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$s"; }

# ---- resources --------------------------------------------------------------------------
start_peer() { # MODE: sets PORT
  local out="$work/peer.$1"
  PORT=""
  "$peer" "$1" 127.0.0.1:0 >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening port=//p' "$out")
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "tcp_peer $1 did not start: $(cat "$out")" >&2
  return 1
}
start_peer sink; sink_port=$PORT
start_peer http; http_port=$PORT
start_peer echo; echo_port=$PORT
used_ports=" "
# port: a free port not handed out yet in this run; sets PORT
port() { while :; do PORT=$(free_port); case "$used_ports" in *" $PORT "*) ;; *) break ;; esac; done; used_ports+="$PORT "; }

# ---- stunnel pair -------------------------------------------------------------------------
st="$work/stunnel"; mkdir -p "$st"
(
  cd "$st"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 2 -subj /CN=bench-ca -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  for who in server client; do
    openssl ecparam -name prime256v1 -genkey -noout -out "$who.key"
    openssl req -new -key "$who.key" -subj "/CN=$who" -out "$who.csr"
    if [ "$who" = server ]; then ext='subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
    else ext='extendedKeyUsage=clientAuth\n'; fi
    printf "$ext" >"$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
      -days 2 -sha256 -extfile "$who.ext" -out "$who.crt"
  done
) >"$st/openssl.log" 2>&1 || { cat "$st/openssl.log" >&2; exit 1; }
# The same TLS as ztr's data plane: TLS 1.3, AES-128-GCM, P-256 ECDHE and
# ECDSA P-256 certificates on both sides. No per-connection logging (ztr logs
# none either), Nagle off on both sockets (ztr sets TCP_NODELAY).
stunnel_common() { # WHO
  cat <<EOF
foreground = yes
pid =
syslog = no
debug = warning
cert = $st/$1.crt
key = $st/$1.key
CAfile = $st/ca.crt
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
ciphersuites = TLS_AES_128_GCM_SHA256
curves = prime256v1
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
}
declare -A st_srv st_cli
{ stunnel_common server; } >"$st/server.conf"
{ stunnel_common client; echo "client = yes"; echo "checkIP = 127.0.0.1"; } >"$st/client.conf"
for r in sink http echo; do
  port; st_srv[$r]=$PORT
  port; st_cli[$r]=$PORT
  port_var="${r}_port"
  printf '[%s]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\n' "$r" "${st_srv[$r]}" "${!port_var}" >>"$st/server.conf"
  printf '[%s]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\n' "$r" "${st_cli[$r]}" "${st_srv[$r]}" >>"$st/client.conf"
done
"$stunnel_bin" "$st/server.conf" >"$st/server.log" 2>&1 &
st_srv_pid=$!; pids+=($!)
"$stunnel_bin" "$st/client.conf" >"$st/client.log" 2>&1 &
st_cli_pid=$!; pids+=($!)
wait_listen "${st_srv[@]}" "${st_cli[@]}" ||
  { echo "stunnel did not start:" >&2; cat "$st/server.log" "$st/client.log" >&2; exit 1; }

# ---- HAProxy pair -------------------------------------------------------------------------
# The same certificates and TLS as stunnel's; TCP mode, one thread per
# process (as each ztr agent here runs one loop), no logging.
hp="$work/haproxy"; mkdir -p "$hp"
cat "$st/server.crt" "$st/server.key" >"$hp/server.pem"
cat "$st/client.crt" "$st/client.key" >"$hp/client.pem"
haproxy_common() {
  cat <<EOF
global
  nbthread 1
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
  ssl-default-server-options ssl-min-ver TLSv1.3
  ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 5m
  timeout server 5m
EOF
}
declare -A hp_srv hp_cli
haproxy_common >"$hp/server.cfg"
haproxy_common >"$hp/client.cfg"
for r in sink http echo; do
  port; hp_srv[$r]=$PORT
  port; hp_cli[$r]=$PORT
  port_var="${r}_port"
  printf 'listen %s\n  bind 127.0.0.1:%s ssl crt %s ca-file %s verify required curves P-256\n  server s 127.0.0.1:%s\n' \
    "$r" "${hp_srv[$r]}" "$hp/server.pem" "$st/ca.crt" "${!port_var}" >>"$hp/server.cfg"
  printf 'listen %s\n  bind 127.0.0.1:%s\n  server s 127.0.0.1:%s ssl crt %s ca-file %s verify required\n' \
    "$r" "${hp_cli[$r]}" "${hp_srv[$r]}" "$hp/client.pem" "$st/ca.crt" >>"$hp/client.cfg"
done
haproxy -db -f "$hp/server.cfg" >"$hp/server.log" 2>&1 &
hp_srv_pid=$!; pids+=($!)
haproxy -db -f "$hp/client.cfg" >"$hp/client.log" 2>&1 &
hp_cli_pid=$!; pids+=($!)
wait_listen "${hp_srv[@]}" "${hp_cli[@]}" ||
  { echo "haproxy did not start:" >&2; cat "$hp/server.log" "$hp/client.log" >&2; exit 1; }

# ---- ztr: controller, connector, tunneler ---------------------------------------------------
token=bench-admin-token-0123456789
env TRUST_DOMAIN=example.org STATE_DIR="$work/ctl" ADMIN_AUTH_TOKEN="$token" \
  CONTROLLER_LISTEN=127.0.0.1:0 ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 \
  "$bin/controller" >"$work/ctl.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'controller started' "$work/ctl.log" && break; sleep 0.05; done
field() { grep -F "$1" "$2" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ctl_port=$(field 'controller started' "$work/ctl.log" control_port)
[ -n "$ctl_port" ] || { echo "controller did not start:" >&2; cat "$work/ctl.log" >&2; exit 1; }
export ADMIN_URL="http://127.0.0.1:$(field 'controller started' "$work/ctl.log" admin_port)" ADMIN_AUTH_TOKEN="$token"
for r in sink http echo; do
  "$bin/controller" resource add "$r" --connector dc1 >/dev/null
  "$bin/controller" allow --tunneler laptop --resource "$r" >/dev/null
done
start_agent() { # role name [extra env] -> pid
  local role="$1" name="$2" allow=(); shift 2
  # A connector's certificate names the IPs its token allows.
  [ "$role" = connector ] && allow=(--address 127.0.0.1)
  env ENROLLMENT_TOKEN="$("$bin/controller" token create --role "$role" --name "$name" "${allow[@]}")" \
    CONTROLLER_ADDR="127.0.0.1:$ctl_port" CONTROLLER_CA="$work/ctl/ca/ca-1.crt" \
    TRUST_DOMAIN=example.org STATE_DIR="$work/$name" NODE_NAME="$name" \
    HEALTH_LISTEN=127.0.0.1:0 "$@" "$bin/$role" >"$work/$name.log" 2>&1 &
  echo $!
}
port; conn_port=$PORT
# One loop per agent (WORKERS=1): the pair next to stunnel and HAProxy on
# the same cores; bench/workers.sh compares one and two loops.
conn_pid=$(start_agent connector dc1 WORKERS=1 CONNECTOR_LISTEN="127.0.0.1:$conn_port" \
  RESOURCES="sink=127.0.0.1:$sink_port,http=127.0.0.1:$http_port,echo=127.0.0.1:$echo_port")
pids+=("$conn_pid")
declare -A fwd
forwards=""
for r in sink http echo; do
  port; fwd[$r]=$PORT
  forwards+="${forwards:+,}127.0.0.1:${fwd[$r]}=$r"
done
tun_pid=$(start_agent tunneler laptop WORKERS=1 FORWARDS="$forwards" SOCKS5_LISTEN=off)
pids+=("$tun_pid")
for _ in $(seq 200); do
  grep -q 'msg="connector list received".* connectors=1' "$work/laptop.log" 2>/dev/null && break
  sleep 0.05
done
grep -q 'msg="connector list received".* connectors=1' "$work/laptop.log" || {
  echo "the tunneler never received a connector list:" >&2
  cat "$work/dc1.log" "$work/laptop.log" >&2; exit 1
}
wait_listen "${fwd[@]}" || { echo "forwards not listening:" >&2; cat "$work/laptop.log" >&2; exit 1; }

# ---- measuring ----------------------------------------------------------------------------
declare -A res # res[path.metric]
run_tool() { # PATH NAME ARGS... : runs tcp_peer, output in $work/PATH.NAME.{out,err}; 1 on failure
  local path="$1" name="$2"; shift 2
  local out="$work/$path.$name"
  if ! "$peer" "$@" >"$out.out" 2>"$out.err"; then
    problem "$path: \`tcp_peer $1\` failed: $(head -c 300 "$out.err" | tr '\n' ' ')"
    return 1
  fi
}
# Each path: its three addresses and its relay processes.
declare -A addr_sink addr_http addr_echo relay_pids
addr_sink[direct]=127.0.0.1:$sink_port; addr_http[direct]=127.0.0.1:$http_port; addr_echo[direct]=127.0.0.1:$echo_port
relay_pids[direct]=""
addr_sink[stunnel]=127.0.0.1:${st_cli[sink]}; addr_http[stunnel]=127.0.0.1:${st_cli[http]}; addr_echo[stunnel]=127.0.0.1:${st_cli[echo]}
relay_pids[stunnel]="$st_srv_pid $st_cli_pid"
addr_sink[haproxy]=127.0.0.1:${hp_cli[sink]}; addr_http[haproxy]=127.0.0.1:${hp_cli[http]}; addr_echo[haproxy]=127.0.0.1:${hp_cli[echo]}
relay_pids[haproxy]="$hp_srv_pid $hp_cli_pid"
addr_sink[ztr]=127.0.0.1:${fwd[sink]}; addr_http[ztr]=127.0.0.1:${fwd[http]}; addr_echo[ztr]=127.0.0.1:${fwd[echo]}
relay_pids[ztr]="$conn_pid $tun_pid"
paths=(direct stunnel haproxy ztr)

# Load from elsewhere on the machine while a path is measured: busy CPU
# minus ours, summed over that path's runs.
declare -A other_ticks other_secs
account_start() { acc_b=$(busy_ticks); acc_o=$(ours_ticks); acc_t=$(date +%s.%N); }
account_end() { # PATH
  local b o t
  b=$(busy_ticks); o=$(ours_ticks); t=$(date +%s.%N)
  other_ticks[$1]=$(( ${other_ticks[$1]:-0} + (b - acc_b) - (o - acc_o) ))
  other_secs[$1]=$(awk -v s="${other_secs[$1]:-0}" -v a="$acc_t" -v b="$t" 'BEGIN { print s + b - a }')
}

# hold PATH: RSS per idle stream through the relay
hold() {
  local path="$1" relay=(${relay_pids[$1]}) f="$work/$1.hold" before during hold_pid
  before=$(rss_kib "${relay[@]}")
  "$peer" hold "${addr_echo[$path]}" "$hold_n" "$hold_secs" >"$f.out" 2>"$f.err" &
  hold_pid=$!; pids+=("$hold_pid")
  for _ in $(seq 1200); do
    grep -q '^hold: ' "$f.err" && break
    kill -0 "$hold_pid" 2>/dev/null || break
    sleep 0.05
  done
  if grep -q '^hold: ' "$f.err"; then
    sleep 1
    during=$(rss_kib "${relay[@]}")
    res[$path.rss]=$(awk -v d=$((during - before)) -v n="$hold_n" 'BEGIN { printf "%.1f", d / n }')
    res[$path.rss_detail]="$before → $during KiB"
  fi
  wait "$hold_pid" || problem "$path: \`tcp_peer hold ${addr_echo[$path]} $hold_n\` failed: $(head -c 300 "$f.err" | tr '\n' ' ')"
}
tput1() { # with the relays' CPU
  local path="$1" relay=(${relay_pids[$1]}) c0 c1
  [ ${#relay[@]} -gt 0 ] && c0=$(cpu_ticks "${relay[@]}")
  run_tool "$path" tput1 bench-throughput "${addr_sink[$path]}" 1 "$tput_secs" || return 0
  res[$path.tput1]=$(kv "$work/$path.tput1.out" mbit_per_s)
  if [ ${#relay[@]} -gt 0 ]; then
    c1=$(cpu_ticks "${relay[@]}")
    res[$path.cpu]=$(awk -v t=$((c1 - c0)) -v hz="$ticks" -v b="$(kv "$work/$path.tput1.out" bytes)" \
      'BEGIN { printf "%.2f", (t / hz) / (b / 1e9) }')
  fi
}
tputN() {
  run_tool "$1" tputN bench-throughput "${addr_sink[$1]}" "$streams" "$tput_secs" &&
    res[$1.tputN]=$(kv "$work/$1.tputN.out" mbit_per_s)
  return 0
}
connect() { # with the relays' CPU per new connection or stream
  local errs relay=(${relay_pids[$1]}) c0 c1
  [ ${#relay[@]} -gt 0 ] && c0=$(cpu_ticks "${relay[@]}")
  run_tool "$1" connect bench-connect "${addr_http[$1]}" "$conn_secs" "$conc" || return 0
  res[$1.connect]=$(kv "$work/$1.connect.out" per_s)
  if [ ${#relay[@]} -gt 0 ]; then
    c1=$(cpu_ticks "${relay[@]}")
    res[$1.cpu_conn]=$(awk -v t=$((c1 - c0)) -v hz="$ticks" -v n="$(kv "$work/$1.connect.out" requests)" \
      'BEGIN { if (n > 0) printf "%.3f", (t / hz) / n * 1000 }')
  fi
  errs=$(kv "$work/$1.connect.out" errors)
  [ "${errs:-0}" != 0 ] && problem "$1: bench-connect counted $errs failed requests"
  return 0
}
latency() {
  run_tool "$1" latency bench-latency "${addr_echo[$1]}" "$lat_count" || return 0
  res[$1.p50]=$(kv "$work/$1.latency.out" p50_us)
  res[$1.p99]=$(kv "$work/$1.latency.out" p99_us)
}

# Warm-up: one echoed exchange per path (ztr: opens the tunneler's data session).
for p in "${paths[@]}"; do run_tool "$p" warmup check "${addr_echo[$p]}" 1 1024 || true; done
# Idle streams first, while the relays' heaps hold only what start-up and the
# warm-up left: later runs would leave freed memory behind that new streams
# could reuse unseen. Then each metric for the three paths back to back, so
# load from elsewhere on the machine hits them alike.
for m in hold tput1 tputN connect latency; do
  for p in "${paths[@]}"; do
    [ "$m" = hold ] && [ "$p" = direct ] && continue
    account_start; "$m" "$p"; account_end "$p"
  done
done
for p in "${paths[@]}"; do
  for pid in ${relay_pids[$p]}; do kill -0 "$pid" 2>/dev/null || problem "$p: relay process $pid exited during the run"; done
  res[$p.other]=$(awk -v o="${other_ticks[$p]}" -v hz="$ticks" -v s="${other_secs[$p]}" \
    'BEGIN { x = o / hz / s * 100; printf "%.0f", x < 0 ? 0 : x }')
done

# ---- report -------------------------------------------------------------------------------
v() { local x="${res[$1]:-}"; echo "${x:-failed}"; }
ratio() { # METRIC [OTHER-PATH]
  local a="${res[ztr.$1]:-}" b="${res[${2:-stunnel}.$1]:-}"
  if [ -z "$a" ] || [ -z "$b" ]; then echo "—"; return; fi
  awk -v a="$a" -v b="$b" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×", a / b }'
}
# verdict METRIC OP FACTOR [ABSOLUTE]: met when ztr OP FACTOR*stunnel (or OP ABSOLUTE)
verdict() {
  local a="${res[ztr.$1]:-}" b="${res[stunnel.$1]:-}" op="$2" k="$3" abs="${4:-}"
  [ -n "$a" ] || { echo "not met (no measurement)"; return; }
  if [ -n "$abs" ]; then b=1; k="$abs"; else [ -n "$b" ] || { echo "not met (no stunnel measurement)"; return; }; fi
  awk -v a="$a" -v b="$b" -v k="$k" -v op="$op" \
    'BEGIN { ok = (op == ">=") ? (a >= k * b) : (a <= k * b); print ok ? "**met**" : "**not met**" }'
}
echo "Four paths to the same tcp_peer servers on loopback, measured in this run, each"
echo "measurement for the four paths back to back: **direct TCP**; **stunnel** $("$stunnel_bin" -version 2>&1 | sed -n 's/^stunnel \([0-9.]*\).*/\1/p' | head -1)"
echo "(a client + server pair, TLS 1.3 mutual TLS, ECDSA P-256 certificates from a throw-away"
echo "CA, AES-128-GCM, P-256 ECDHE, \`verifyChain\` + \`requireCert\` on both sides, no"
echo "per-connection logging); **HAProxy** $(haproxy -v 2>/dev/null | sed -n 's/^HAProxy version \([0-9.]*\).*/\1/p' | head -1)"
echo "(a client + server pair in TCP mode, \`nbthread 1\` each, the same certificates and TLS,"
echo "\`verify required\` on both sides, no logging); **ztr** (release build: tunneler port forward → one mTLS"
echo "\`ztr-data/1\` session → connector, \`LOG_LEVEL=info\`). The load generator"
echo "(\`tests/tools/tcp_peer\`), the servers and the relays share the machine's $(nproc) cores."
echo "Throughput: ${tput_secs} s against a sink; new connections: ${conn_secs} s of HTTP requests with"
echo "\`Connection: close\`, ${conc} in flight, each a new TCP connection to the resource / stunnel"
echo "client port / forward (stunnel, HAProxy: a new TLS handshake each, session resumption as"
echo "they default; ztr: a new stream in the existing session); latency: ${lat_count} round trips"
echo "of 64 bytes on one connection to an echo server; idle memory: ${hold_n} connections held"
echo "open through the relay (each echoed 1 byte), RSS of both relay processes during the"
echo "hold minus before it; CPU: utime + stime of both relay processes during the"
echo "single-stream run per 10^9 bytes moved, and during the new-connections run per"
echo "request (what one free core would allow: 1000 / that many per second). stunnel runs a thread per connection in each"
echo "process; each HAProxy process and each ztr agent is one event-loop thread. In the last"
echo "columns, higher is better for throughput and connections, lower for latency, memory"
echo "and CPU. Source:"
echo "\`bench/dataplane.sh\`."
echo
worst=0
for p in "${paths[@]}"; do [ "${res[$p.other]:-0}" -gt "$worst" ] && worst=${res[$p.other]}; done
if [ "$worst" -ge 20 ]; then
  echo "**This run shared the machine:** other processes used up to ${worst}% of a core while"
  echo "it measured (last row), so rates and latencies are worse and noisier than on a quiet"
  echo "machine."
  echo
fi
row() { # LABEL METRIC [NO-DIRECT]
  local d; if [ -n "${3:-}" ]; then d="n/a"; else d=$(v "direct.$2"); fi
  echo "| $1 | $d | $(v "stunnel.$2") | $(v "haproxy.$2") | $(v "ztr.$2") | $(ratio "$2") | $(ratio "$2" haproxy) |"
}
echo "| metric | direct TCP | stunnel | HAProxy | ztr | ztr / stunnel | ztr / HAProxy |"
echo "|---|---|---|---|---|---|---|"
row "throughput, 1 stream (Mbit/s)" tput1
row "throughput, $streams streams (Mbit/s)" tputN
row "new connections/s (concurrency $conc)" connect
row "latency p50, 64 B round trip (µs)" p50
row "latency p99, 64 B round trip (µs)" p99
row "RSS per idle stream (KiB; ${hold_n} held)" rss no-direct
row "relay CPU per GB, 1 stream (s)" cpu no-direct
row "relay CPU per new connection / stream (ms)" cpu_conn no-direct
echo "| everything else on the machine meanwhile (% of one core) | $(v direct.other) | $(v stunnel.other) | $(v haproxy.other) | $(v ztr.other) | | |"
echo
echo "RSS of the relay processes before → during the hold: stunnel ${res[stunnel.rss_detail]:-n/a},"
echo "HAProxy ${res[haproxy.rss_detail]:-n/a}, ztr ${res[ztr.rss_detail]:-n/a}."
echo
echo "Targets for ztr:"
echo
echo "- single-stream throughput ≥ 1.2× stunnel's: $(verdict tput1 '>=' 1.2)"
echo "- $streams-stream throughput ≥ 1.2× stunnel's: $(verdict tputN '>=' 1.2)"
echo "- new streams/s ≥ 10× stunnel's new connections/s: $(verdict connect '>=' 10)"
echo "- p99 latency ≤ 2× stunnel's: $(verdict p99 '<=' 2)"
echo "- ≤ 16 KiB RSS per idle stream: $(verdict rss '<=' 1 16)"
if [ -n "${res[ztr.cpu_conn]:-}" ]; then
  echo "- ≥ 10 000 new streams/s on one core for the pair (1000 / relay CPU per stream:"
  echo "  $(awk -v c="${res[ztr.cpu_conn]}" 'BEGIN { if (c > 0) printf "%.0f", 1000 / c; else print "—" }')/s):" \
    "$(awk -v c="${res[ztr.cpu_conn]}" 'BEGIN { print (c > 0 && 1000 / c >= 10000) ? "**met**" : "**not met**" }')"
fi

# ---- problems: failed runs, errors in the relays' logs -------------------------------------
ztr_counters=""
for who in connector:dc1 tunneler:laptop; do
  role=${who%%:*} f="$work/${who#*:}.log"
  n=$(grep -cE 'level=(error|warn)' "$f" || true)
  [ "$n" -gt 0 ] && problem "ztr $role: $n warning/error log lines, e.g. \`$(grep -E 'level=(error|warn)' "$f" | head -1 | cut -c1-240)\`"
  # a session that ends takes every stream in it along (logged at info)
  n=$(grep -c 'msg="data session closed"' "$f" || true)
  [ "$n" -gt 0 ] && problem "ztr $role: $n data session(s) closed during the run, e.g. \`$(grep 'msg="data session closed"' "$f" | head -1 | cut -c1-240)\`"
  # the agent's own counters (/health "data")
  hp=$(grep -o 'health_port=[0-9]*' "$f" | head -1 | cut -d= -f2)
  data=$(curl -s -m 5 "http://127.0.0.1:$hp/health" 2>/dev/null | sed -n 's/.*"data":{\([^}]*\)}.*/\1/p')
  if [ -z "$data" ]; then
    problem "ztr $role: /health did not answer after the run"
    continue
  fi
  get() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$data"; }
  ztr_counters+="${ztr_counters:+; }$role: sessions_total $(get sessions_total), streams_total $(get streams_total), streams_failed $(get streams_failed)"
  [ "$(get streams_failed)" != 0 ] && problem "ztr $role: /health counts $(get streams_failed) failed streams"
  [ "$(get sessions_total)" != 1 ] && problem "ztr $role: $(get sessions_total) data sessions over the run (1 expected)"
done
for f in "$st/server.log" "$st/client.log"; do
  n=$(grep -c . "$f" || true)
  [ "$n" -gt 0 ] && problem "stunnel $(basename "$f" .log): $n log lines at warning or worse, e.g. \`$(head -1 "$f" | cut -c1-240)\`"
done
echo
[ -n "$ztr_counters" ] && { echo "ztr's own counters after the run (\`/health\` → \`data\`): $ztr_counters."; echo; }
if [ ${#problems[@]} -eq 0 ]; then
  echo "No failed runs, no failed requests, no warnings or errors in the relays' logs."
else
  echo "Problems seen in this run:"
  echo
  for p in "${problems[@]}"; do echo "- $p"; done
fi
