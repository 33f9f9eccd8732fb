#!/usr/bin/env bash
# Controller cluster scale: CTL_CLUSTER_CONTROLLERS controllers (default 3)
# on one PostgreSQL database (a server started here with tests/pg.sh,
# fsync=off), sharing their CA through it (CA_SEAL_KEY_FILE), each holding
# CTL_CLUSTER_SESSIONS / controllers heartbeating control sessions opened by
# its own build/bench/ctl_load process. Sampled in the steady heartbeat
# phase: every controller's CPU and RSS, the server's CPU and bytes written.
# Writes a markdown section to stdout; progress goes to stderr. Loopback only.
#
# Knobs: CTL_CLUSTER_CONTROLLERS=3 CTL_CLUSTER_SESSIONS=30000
#   CTL_CLUSTER_INTERVAL=10s CTL_CLUSTER_WARMUP=10 CTL_CLUSTER_WINDOW=30
#   CTL_CLUSTER_CONCURRENCY=16 (per generator)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/build/bench/controller-cluster"
controller="$root/build/bin/controller"
load="$root/build/bench/ctl_load"
count="${CTL_CLUSTER_CONTROLLERS:-3}"
total="${CTL_CLUSTER_SESSIONS:-30000}"
interval="${CTL_CLUSTER_INTERVAL:-10s}"
warmup="${CTL_CLUSTER_WARMUP:-10}"
window="${CTL_CLUSTER_WINDOW:-30}"
conc="${CTL_CLUSTER_CONCURRENCY:-16}"
interval_ms=$(( ${interval%s} * 1000 ))
hold=$(( warmup + window + 5 ))
trust_domain=bench.example.org
say() { echo "controller cluster bench: $*" >&2; }
die() { say "$*"; exit 1; }
[ -x "$controller" ] || die "$controller is missing (run make)"
make -C "$root" --no-print-directory build/bench/ctl_load >&2 || die "cannot build ctl_load"

# One descriptor per session on each side: a process holds at most the
# open-file limit, so each controller and each generator holds its share.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
per=$(( total / count ))
notes=()
if [ "$fd_limit" != unlimited ] && [ "$per" -gt $((fd_limit - 300)) ]; then
  notes+=("The open-file limit here is $fd_limit per process (hard), so each controller held $((fd_limit - 300)) sessions instead of $per.")
  per=$((fd_limit - 300))
fi
total=$(( per * count ))
identities=$(( (per + 3) / 4 ))   # the controller admits 4 sessions per node

# shellcheck source=../tests/pg.sh
. "$root/tests/pg.sh"
pg_start || die "PostgreSQL did not start"
rm -rf "$work"; mkdir -p "$work"
pids=(); loads=()
cleanup() {
  local p
  for p in "${loads[@]}" "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop
}
trap cleanup EXIT

cpu_ticks() { { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } 2>/dev/null || echo 0; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
io_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
sum_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
pg_pids() { pgrep -u nobody -x postgres || true; }
pg_written() { local t=0 p; for p in $(pg_pids); do t=$((t + $(io_field "$p" write_bytes))); done; echo "$t"; }
clk_tck="$(getconf CLK_TCK)"

psql -q "${PG_URL_PREFIX}postgres" -c "CREATE DATABASE bench_cluster" >&2
url="${PG_URL_PREFIX}bench_cluster"
seal="$work/ca-seal.key"
openssl rand -hex 32 >"$seal"; chmod 600 "$seal"
admin_token="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
addrs=(); healths=()
for ((n = 1; n <= count; n++)); do
  state="$work/c$n"; log="$work/c$n.log"; mkdir -p "$state"
  env TRUST_DOMAIN="$trust_domain" STATE_DIR="$state" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 HEARTBEAT_INTERVAL="$interval" \
    HANDSHAKES_PER_SOURCE=16384 STORE_URL="$url" CA_SEAL_KEY_FILE="$seal" \
    ADMIN_AUTH_TOKEN="$admin_token" SESSIONS_MAX=$((per > 20000 ? per + 100 : 20000)) \
    "$controller" >"$log" 2>&1 &
  pids+=($!)
  for ((i = 0; i < 400; i++)); do grep -qF 'msg="controller started"' "$log" && break; sleep 0.05; done
  line="$(grep -F 'msg="controller started"' "$log" | tail -1)" || die "controller $n did not start"
  addrs+=("127.0.0.1:$(field "$line" control_port)")
  healths+=("http://127.0.0.1:$(field "$line" health_port)")
  [ "$n" = 1 ] && export ADMIN_URL="http://127.0.0.1:$(field "$line" admin_port)" ADMIN_AUTH_TOKEN="$admin_token"
done
ca="$work/c1/ca/ca-1.crt"
idle_rss=0; for p in "${pids[@]}"; do idle_rss=$((idle_rss + $(status_kb "$p" VmRSS))); done

say "$count controllers, $per sessions each ($identities identities each), heartbeat $interval"
r0=$(now); rc0=$(sum_ticks "${pids[@]}")
for ((n = 1; n <= count; n++)); do
  tok="$("$controller" token create --role tunneler --name "bench-c$n-" --prefix --uses "$identities")"
  "$load" sessions --controller "${addrs[n - 1]}" --ca "$ca" --trust-domain "$trust_domain" \
    --token "$tok" --name-prefix "bench-c$n-" --sessions "$per" --identities "$identities" \
    --concurrency "$conc" --interval "$interval_ms" --hold "$hold" \
    --max-errors $((per / 1000 + 5)) --timeout 900 >"$work/load$n.out" 2>"$work/load$n.err" &
  loads+=($!)
done
for ((i = 0; i < 18000; i++)); do
  ready=0
  for ((n = 1; n <= count; n++)); do grep -q '^ready ' "$work/load$n.out" 2>/dev/null && ready=$((ready + 1)); done
  [ "$ready" = "$count" ] && break
  alive=0; for p in "${loads[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" = 1 ] || break
  sleep 0.05
done
[ "${ready:-0}" = "$count" ] || { cat "$work"/load*.err >&2; die "not every generator got its sessions up"; }
r1=$(now); rc1=$(sum_ticks "${pids[@]}")
sleep "$warmup"
metric_sum() {
  local t=0 h v
  for h in "${healths[@]}"; do
    v="$(curl -fsS --max-time 5 "$h/metrics" | awk -v n="$1" '$1 == n {print $2}')" || v=0
    t=$(calc "%.0f" "$t + ${v:-0}")
  done
  echo "$t"
}
t0=$(now); c0=$(sum_ticks "${pids[@]}"); p0=$(sum_ticks $(pg_pids)); pw0=$(pg_written)
b0=$(busy_ticks); g0=$(sum_ticks "${loads[@]}"); h0=$(metric_sum ztr_controller_heartbeats_total)
w0=0; for p in "${pids[@]}"; do w0=$((w0 + $(io_field "$p" wchar))); done
sleep "$window"
t1=$(now); c1=$(sum_ticks "${pids[@]}"); p1=$(sum_ticks $(pg_pids)); pw1=$(pg_written)
b1=$(busy_ticks); g1=$(sum_ticks "${loads[@]}"); h1=$(metric_sum ztr_controller_heartbeats_total)
w1=0; for p in "${pids[@]}"; do w1=$((w1 + $(io_field "$p" wchar))); done
live=$(metric_sum ztr_controller_sessions)
rss=(); rss_sum=0
for p in "${pids[@]}"; do v=$(status_kb "$p" VmRSS); rss+=("$v"); rss_sum=$((rss_sum + v)); done
online=$(curl -fsS --max-time 10 "${healths[0]}/metrics" |
  awk '$1 == "ztr_controller_nodes{status=\"online\"}" {print $2}') || online="?"
controllers_alive=$("$controller" controllers | grep -c 'alive=true' || true)
set +e
load_rc=0
for p in "${loads[@]}"; do wait "$p" || load_rc=$?; done
set -e
loads=()
problems="$(cat "$work"/c*.log | { grep -E 'level=(warn|error)' || true; } |
  sed 's/.*msg="\([^"]*\)".*/\1/' | sort | uniq -c | sort -rn | head -5 |
  awk '{c = $1; $1 = ""; printf "%s%s ×%s", (NR > 1 ? "; " : ""), c, $0}')"
for p in "${pids[@]}"; do kill -TERM "$p"; done
stop_rc=0; for p in "${pids[@]}"; do wait "$p" || stop_rc=$?; done
pids=()
cat "$work"/load*.out >&2

dt=$(calc "%.3f" "$t1 - $t0")
beats=$((h1 - h0))
errors=0; setup_failed=0; ramp_rate_sum=0
for ((n = 1; n <= count; n++)); do
  e="$(grep '^errors ' "$work/load$n.out" || true)"
  errors=$((errors + $(field "$e" total)))
  ramp="$(grep '^ramp ' "$work/load$n.out" || true)"
  ramp_rate_sum=$(calc "%.0f" "$ramp_rate_sum + $(field "$ramp" per_s)")
done
other=$(calc "%.1f" "(($b1 - $b0) - ($c1 - $c0) - ($g1 - $g0) - ($p1 - $p0)) / $clk_tck / $dt * 100")

echo "$count controller processes (\`build/bin/controller\`, release build) on one PostgreSQL"
echo "database ($("$PG_BIN/postgres" --version | sed 's/.*) //'), a local server started by the bench, \`fsync=off\`),"
echo "sharing their CA through it (\`CA_SEAL_KEY_FILE\`); each driven by its own"
echo "\`bench/ctl_load.c\` process over loopback, all on this machine's $(nproc) cores."
echo "Source: \`bench/controller_cluster.sh\`."
for note in "${notes[@]}"; do echo; echo "$note"; done
echo
echo "| measurement | value |"
echo "|---|---|"
echo "| sessions held (\`ztr_controller_sessions\`, summed) | **$live** ($per per controller, $((identities * count)) nodes ONLINE: $online) |"
echo "| controllers the cluster lists alive (\`controller controllers\`) | $controllers_alive of $count |"
echo "| session set-up, all generators together | $ramp_rate_sum sessions/s; controllers' CPU $(calc "%.2f" "($rc1 - $rc0) / $clk_tck * 1000 / $total") ms per session |"
echo "| heartbeats in the ${window} s window | $beats ($(calc "%.0f" "$beats / $dt")/s) |"
echo "| controllers' CPU per heartbeat (all $count summed) | **$(calc "%.1f" "($c1 - $c0) / $clk_tck * 1000000 / ($beats > 0 ? $beats : 1)") µs**, $(calc "%.1f" "($c1 - $c0) / $clk_tck / $dt * 100")% of one core |"
echo "| PostgreSQL server per heartbeat | $(calc "%.1f" "($p1 - $p0) / $clk_tck * 1000000 / ($beats > 0 ? $beats : 1)") µs of CPU, $(calc "%.2f" "($pw1 - $pw0) / 1024 / ($beats > 0 ? $beats : 1)") KiB written to disk |"
echo "| controllers' writes per heartbeat (all calls: log, database socket) | $(calc "%.2f" "($w1 - $w0) / 1024 / ($beats > 0 ? $beats : 1)") KiB |"
echo "| RSS per controller | $(printf '%s ' "${rss[@]}" | awk '{for (i = 1; i <= NF; i++) printf "%s%.0f MiB", (i > 1 ? ", " : ""), $i / 1024}') |"
echo "| RSS per session | **$(calc "%.1f" "($rss_sum - $idle_rss) / $total") KiB** (all controllers' RSS less their idle RSS, over the sessions) |"
echo "| everything else on the machine | ${other}% of one core |"
echo "| errors | $errors (generators' exit $load_rc; controllers' exit $stop_rc after SIGTERM) |"
[ -n "$problems" ] && echo "| controller warnings/errors | $problems |"
echo
