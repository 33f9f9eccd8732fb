#!/usr/bin/env bash
# Scaling with WORKERS: the same release-build controller, connector and
# tunneler run with WORKERS=1 and then WORKERS=2 (both agents), each time
# measured with parallel streams of bulk data (tcp_peer bench-throughput to
# a sink) and new streams per second (tcp_peer bench-connect, one HTTP
# request per stream). The CPU of every process involved is read from /proc
# over each run — relays, the load generator, the servers — to say which of
# them is the limit. Prints a markdown section. Everything stays on
# 127.0.0.0/8.
#
#   WK_SECONDS (10)      each run
#   WK_STREAMS (8)       streams of the throughput run
#   WK_CONCURRENCY (16)  streams in flight for bench-connect
#   WK_ROUNDS (3)        rounds of 1 then 2 workers; each figure is the best
#                        round's (the machine is shared: a round that met
#                        other load is not the agents' figure)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bin"
peer="$root/build/tests/tools/tcp_peer"
secs="${WK_SECONDS:-10}"
streams="${WK_STREAMS:-8}"
conc="${WK_CONCURRENCY:-16}"
rounds="${WK_ROUNDS:-3}"
hz=$(getconf CLK_TCK)
for f in "$bin/controller" "$bin/connector" "$bin/tunneler" "$peer"; do
  [ -x "$f" ] || { echo "missing $f: run make first" >&2; exit 1; }
done

work="$(mktemp -d)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local port used
  used="$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://')"
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 20000))
    grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
  done
  return 1
}
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
kv() { grep -o "\b$2=[^ ]*" "$1" 2>/dev/null | tail -1 | cut -d= -f2-; }
ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }
# CPU ticks of this shell's waited-for children (the load generator).
child_ticks() { awk '{print $16 + $17}' /proc/$$/stat; }
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

start_peer() { # MODE: sets PORT, PEER_PID
  local out="$work/peer.$1"
  "$peer" "$1" 127.0.0.1:0 >"$out" 2>&1 &
  PEER_PID=$!; pids+=($!)
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^listening port=//p' "$out")
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "tcp_peer $1 did not start" >&2; return 1
}
start_peer sink; sink_port=$PORT; sink_pid=$PEER_PID
start_peer http; http_port=$PORT; http_pid=$PEER_PID

token=bench-admin-token-0123456789
env TRUST_DOMAIN=example.org STATE_DIR="$work/ctl" ADMIN_AUTH_TOKEN="$token" \
  CONTROLLER_LISTEN=127.0.0.1:0 ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 \
  "$bin/controller" >"$work/ctl.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'controller started' "$work/ctl.log" && break; sleep 0.05; done
field() { grep -F "$1" "$2" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ctl_port=$(field 'controller started' "$work/ctl.log" control_port)
[ -n "$ctl_port" ] || { echo "controller did not start" >&2; cat "$work/ctl.log" >&2; exit 1; }
export ADMIN_URL="http://127.0.0.1:$(field 'controller started' "$work/ctl.log" admin_port)" ADMIN_AUTH_TOKEN="$token"
for r in sink http; do
  "$bin/controller" resource add "$r" --connector dc1 >/dev/null
  "$bin/controller" allow --tunneler laptop --resource "$r" >/dev/null
done
conn_port=$(free_port); fwd_sink=$(free_port); fwd_http=$(free_port)
start_agent() { # role name [env...] -> pid; enrolls on the first start
  local role="$1" name="$2" extra=(); shift 2
  if [ ! -d "$work/$name" ]; then
    local allow=(); [ "$role" = connector ] && allow=(--address 127.0.0.1)
    extra=(ENROLLMENT_TOKEN="$("$bin/controller" token create --role "$role" --name "$name" "${allow[@]}")")
  fi
  env "${extra[@]}" CONTROLLER_ADDR="127.0.0.1:$ctl_port" CONTROLLER_CA="$work/ctl/ca/ca-1.crt" \
    TRUST_DOMAIN=example.org STATE_DIR="$work/$name" NODE_NAME="$name" \
    HEALTH_LISTEN=127.0.0.1:0 "$@" "$bin/$role" >>"$work/$name.log" 2>&1 &
  echo $!
}

declare -A res
measure() { # WORKERS
  local w="$1" conn tun b0 b1 l0 l1 r0 r1 s0 s1 t0 t1
  : >"$work/laptop.log"
  conn=$(start_agent connector dc1 WORKERS="$w" CONNECTOR_LISTEN="127.0.0.1:$conn_port" \
    RESOURCES="sink=127.0.0.1:$sink_port,http=127.0.0.1:$http_port")
  tun=$(start_agent tunneler laptop WORKERS="$w" SOCKS5_LISTEN=off \
    FORWARDS="127.0.0.1:$fwd_sink=sink,127.0.0.1:$fwd_http=http")
  pids+=("$conn" "$tun")
  for _ in $(seq 200); do
    grep -q 'msg="connector list received".* connectors=1' "$work/laptop.log" && break; sleep 0.05
  done
  wait_listen "$conn_port" "$fwd_sink" "$fwd_http" || { echo "agents did not start" >&2; exit 1; }
  "$peer" check "127.0.0.1:$fwd_sink" 4 1024 >/dev/null 2>&1 || true   # warm-up: sessions up
  for run in tput connect; do
    r0=$(ticks "$conn" "$tun"); s0=$(ticks "$sink_pid" "$http_pid"); l0=$(child_ticks)
    b0=$(busy_ticks); t0=$(date +%s.%N)
    local rate
    if [ "$run" = tput ]; then
      "$peer" bench-throughput "127.0.0.1:$fwd_sink" "$streams" "$secs" >"$work/$w.$run" 2>&1 || true
      rate=$(kv "$work/$w.$run" mbit_per_s)
    else
      "$peer" bench-connect "127.0.0.1:$fwd_http" "$secs" "$conc" >"$work/$w.$run" 2>&1 || true
      rate=$(kv "$work/$w.$run" per_s)
      res[$w.errors]=$(( ${res[$w.errors]:-0} + $(kv "$work/$w.$run" errors || echo 0) ))
    fi
    r1=$(ticks "$conn" "$tun"); s1=$(ticks "$sink_pid" "$http_pid"); l1=$(child_ticks)
    b1=$(busy_ticks); t1=$(date +%s.%N)
    res[$w.$run.all]+="${res[$w.$run.all]:+, }${rate:-failed}"
    # Keep the best round's figures.
    awk -v a="${rate:-0}" -v b="${res[$w.$run]:-0}" 'BEGIN { exit !(a > b) }' || continue
    res[$w.$run]=$rate
    pct() { awk -v t="$1" -v hz="$hz" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", t / hz / (b - a) * 100 }'; }
    res[$w.$run.relay]=$(pct $((r1 - r0)))
    res[$w.$run.gen]=$(pct $((l1 - l0)))
    res[$w.$run.servers]=$(pct $((s1 - s0)))
    res[$w.$run.machine]=$(pct $((b1 - b0)))
  done
  res[$w.sessions]=$(curl -s -m 5 "http://127.0.0.1:$(grep -o 'health_port=[0-9]*' "$work/dc1.log" | tail -1 | cut -d= -f2)/health" |
    grep -o '"worker_sessions":\[[^]]*\]' | sed 's/.*\[\(.*\)\]/\1/' || true)
  # Not our children (started from a subshell): poll until they are gone.
  kill "$conn" "$tun"
  for _ in $(seq 100); do kill -0 "$conn" 2>/dev/null || kill -0 "$tun" 2>/dev/null || break; sleep 0.05; done
}
for _ in $(seq "$rounds"); do measure 1; measure 2; done

v() { local x="${res[$1]:-}"; echo "${x:-failed}"; }
nproc_n=$(nproc)
# rest W.RUN: busy CPU that none of our processes account for (the kernel's
# softirq work for loopback TCP, other processes on the machine).
rest() { echo $(( ${res[$1.machine]:-0} - ${res[$1.relay]:-0} - ${res[$1.gen]:-0} - ${res[$1.servers]:-0} )); }
ratio() { awk -v a="${res[2.$1]:-0}" -v b="${res[1.$1]:-0}" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×", a / b }'; }
# limit RUN: which side ran out of CPU with two workers.
limit() {
  local r="$1" m="${res[2.$1.machine]:-0}" g="${res[2.$1.gen]:-0}"
  if [ "$g" -ge 90 ]; then
    echo "the load generator (one thread, ${g} % of a core) is the limit"
  elif [ "$m" -ge $((nproc_n * 75)) ]; then
    echo "the machine is the limit: its $nproc_n cores were ${m} % busy (of $((nproc_n * 100)) %): ${res[2.$r.relay]} % in the relays, ${g} % in the load generator, ${res[2.$r.servers]} % in the servers and $(rest 2.$r) % in the kernel's loopback TCP and other processes"
  else
    echo "neither side saturated a core (${m} % of the machine busy)"
  fi
}
echo "The same controller, connector and tunneler (release build) with \`WORKERS=1\` and then"
echo "\`WORKERS=2\` on both agents, on this machine's $(nproc) cores, which the relays share with the"
echo "load generator (\`tests/tools/tcp_peer\`, one thread) and the servers (one \`tcp_peer\` each)."
echo "Throughput: ${streams} parallel streams to a sink for ${secs} s; new streams/s: ${secs} s of one"
echo "HTTP request per stream, ${conc} in flight. CPU: per cent of one core over each run, from"
echo "/proc. $rounds rounds of one worker then two; the table gives the best round of each"
echo "(its CPU figures too): this machine is shared with other work. Source: \`bench/workers.sh\`."
echo
echo "| measurement | WORKERS=1 | WORKERS=2 | 2 / 1 |"
echo "|---|---|---|---|"
echo "| throughput, $streams streams (Mbit/s), best round | $(v 1.tput) | $(v 2.tput) | $(ratio tput) |"
echo "| new streams/s (concurrency $conc), best round | $(v 1.connect) | $(v 2.connect) | $(ratio connect) |"
echo "| throughput, every round | $(v 1.tput.all) | $(v 2.tput.all) | |"
echo "| new streams/s, every round | $(v 1.connect.all) | $(v 2.connect.all) | |"
for r in tput connect; do
  name=throughput; [ "$r" = connect ] && name="new streams"
  echo "| $name: CPU of connector + tunneler (% of a core) | $(v 1.$r.relay) | $(v 2.$r.relay) | |"
  echo "| $name: CPU of the load generator | $(v 1.$r.gen) | $(v 2.$r.gen) | |"
  echo "| $name: CPU of the servers | $(v 1.$r.servers) | $(v 2.$r.servers) | |"
  echo "| $name: the rest (kernel loopback TCP, other processes) | $(rest 1.$r) | $(rest 2.$r) | |"
  echo "| $name: the whole machine busy | $(v 1.$r.machine) | $(v 2.$r.machine) | |"
done
echo "| connector sessions per loop after the runs | $(v 1.sessions) | $(v 2.sessions) | |"
echo
echo "One tunneler opens a session per loop of its own; which connector loop each lands on is"
echo "the kernel's SO_REUSEPORT hash of its address and port, so with a single tunneler the"
echo "connector's loops may not share the work (last row); many tunnelers spread evenly."
echo
echo "With two workers, throughput: $(limit tput); new streams: $(limit connect)."
if [ "$nproc_n" -le 2 ]; then
  echo "On $nproc_n cores one worker per agent already runs the relay pair as two threads (a"
  echo "connector and a tunneler), able to use both cores; a second worker per agent finds no"
  echo "idle core beside the load generator, the servers and the kernel's loopback TCP: what it"
  echo "gains here comes and goes with the load from elsewhere (every round is listed), and the"
  echo "scaling from 1 to 2 workers can only be measured on a machine with cores to spare."
fi
echo "Failed requests in bench-connect: $(v 1.errors) and $(v 2.errors)."
