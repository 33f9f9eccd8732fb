#!/usr/bin/env bash
# Controller scale: (1) enrollment rate, (2) CTL_BENCH_SESSIONS concurrent
# heartbeating control-plane sessions held by one controller process, with
# the controller's RSS and CPU sampled in the steady heartbeat phase.
#
# Starts the release controller (build/bin/controller, built by `make`) on
# 127.0.0.1 with kernel-chosen ports, a fresh STATE_DIR per phase, and drives
# it with build/bench/ctl_load (bench/ctl_load.c). Writes a markdown section
# to stdout; progress and failures go to stderr. Loopback only.
#
# Knobs (environment; defaults are what `make bench` runs):
#   CTL_BENCH_ENROLL=5000 CTL_BENCH_ENROLL_CONCURRENCY=16 CTL_BENCH_SERIAL=100
#   CTL_BENCH_SESSIONS=10000 CTL_BENCH_IDENTITIES=sessions/4 CTL_BENCH_SESSION_CONCURRENCY=16
#   CTL_BENCH_INTERVAL=10s CTL_BENCH_WARMUP=10 CTL_BENCH_WINDOW=30
#   CTL_BENCH_STORE=sqlite|postgres (postgres: a server started here with
#   tests/pg.sh, a database per part; its processes' CPU and writes are
#   measured beside the controller's)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/build/bench/controller"
controller="$root/build/bin/controller"
load="$root/build/bench/ctl_load"

enroll_count="${CTL_BENCH_ENROLL:-5000}"
enroll_conc="${CTL_BENCH_ENROLL_CONCURRENCY:-16}"
serial_count="${CTL_BENCH_SERIAL:-100}"  # enrollments one at a time, for latency alone
sessions="${CTL_BENCH_SESSIONS:-10000}"
# The controller admits at most 4 live control sessions per node
# (docs/SECURITY.md): each identity carries 4 sessions at most.
identities="${CTL_BENCH_IDENTITIES:-$(( (${CTL_BENCH_SESSIONS:-10000} + 3) / 4 ))}"
session_conc="${CTL_BENCH_SESSION_CONCURRENCY:-16}"
interval="${CTL_BENCH_INTERVAL:-10s}"
warmup="${CTL_BENCH_WARMUP:-10}"   # after the last session is up: every beat phase running
window="${CTL_BENCH_WINDOW:-30}"   # the steady-state sample
interval_ms=$(( ${interval%s} * 1000 ))
hold=$(( warmup + window + 2 ))
trust_domain=bench.example.org
store="${CTL_BENCH_STORE:-sqlite}"
case "$store" in sqlite | postgres) ;; *) echo "CTL_BENCH_STORE: sqlite or postgres" >&2; exit 2 ;; esac

say() { echo "controller bench: $*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$controller" ] || die "$controller is missing (run make)"
make -C "$root" --no-print-directory build/bench/ctl_load >&2 || die "cannot build ctl_load"

# One descriptor per session on each side (plus the loop, logs, SQLite).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
notes=()
if [ "$fd_limit" != unlimited ] && [ "$fd_limit" -lt $((sessions + 200)) ]; then
  notes+=("The open-file limit here is $fd_limit (hard), so the session count was lowered from $sessions to $((fd_limit - 200)).")
  sessions=$((fd_limit - 200))
fi
[ "$identities" -le "$sessions" ] || identities="$sessions"
[ $((identities * 4)) -ge "$sessions" ] ||
  die "CTL_BENCH_IDENTITIES=$identities: the controller admits 4 sessions per node, $sessions need $(( (sessions + 3) / 4 ))"

clk_tck="$(getconf CLK_TCK)"
if [ "$store" = postgres ]; then
  # shellcheck source=../tests/pg.sh
  . "$root/tests/pg.sh"
  pg_start || { echo "controller bench: PostgreSQL did not start" >&2; exit 1; }
fi
rm -rf "$work"
mkdir -p "$work"
ctl_pid=""
load_pid=""
cleanup() {
  [ "$store" = postgres ] && pg_stop
  [ -n "$load_pid" ] && kill -TERM "$load_pid" 2>/dev/null || true
  [ -n "$ctl_pid" ] && kill -TERM "$ctl_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# ---- /proc readings ----------------------------------------------------------
# Each prints 0 once the process is gone; callers check it is alive.
cpu_ticks() { # utime+stime of PID (fields after the ")" of comm: 12 and 13)
  { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } 2>/dev/null || echo 0
}
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
io_field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
runq_ms() { # time PID was runnable but waiting for a CPU (schedstat, ns → ms)
  awk '{printf "%d", $2 / 1e6}' "/proc/$1/schedstat" 2>/dev/null || echo 0
}
busy_ticks() { # user+nice+system+irq+softirq over all CPUs (a task's system time
  # here includes softirq work such as loopback delivery, so count it too)
  awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat
}
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
at_least_0() { awk -v v="$1" 'BEGIN {printf "%.0f", v < 0 ? 0 : v}'; }
field() { # field LINE KEY: the value of KEY=... in a ctl_load output line
  tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}
metric() { # metric NAME: one value from the controller's /metrics (0 if unreachable)
  local v
  v="$(curl -fsS --max-time 5 "$health_url/metrics" 2>/dev/null | awk -v n="$1" '$1 == n {print $2}')" || true
  echo "${v:-0}"
}

# The PostgreSQL server's processes (postmaster and backends): their CPU
# ticks and bytes written, summed; 0 on SQLite.
pg_pids() { [ "$store" = postgres ] && pgrep -u nobody -x postgres || true; }
pg_ticks() {
  local t=0 p
  for p in $(pg_pids); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
  echo "$t"
}
pg_written() {
  local t=0 p
  for p in $(pg_pids); do t=$((t + $(io_field "$p" write_bytes))); done
  echo "$t"
}

# start_controller NAME: fresh state, loopback, kernel-chosen ports.
start_controller() {
  local state="$work/$1" log="$work/$1.log" i
  local store_env=()
  mkdir -p "$state"
  if [ "$store" = postgres ]; then
    psql -q "${PG_URL_PREFIX}postgres" -c "CREATE DATABASE bench_$1" >&2
    store_env=(STORE_URL="${PG_URL_PREFIX}bench_$1")
  fi
  admin_token="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  env TRUST_DOMAIN="$trust_domain" STATE_DIR="$state" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 HEARTBEAT_INTERVAL="$interval" \
    ADMIN_AUTH_TOKEN="$admin_token" SESSIONS_MAX=$((sessions > 20000 ? sessions + 100 : 20000)) \
    "${store_env[@]}" "$controller" >"$log" 2>&1 &
  ctl_pid=$!
  for ((i = 0; i < 200; i++)); do
    grep -qF 'msg="controller started"' "$log" && break
    kill -0 "$ctl_pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -qF 'msg="controller started"' "$log" || { tail -5 "$log" >&2; die "controller did not start"; }
  local line; line="$(grep -F 'msg="controller started"' "$log" | tail -1)"
  ctl_addr="127.0.0.1:$(field "$line" control_port)"
  health_url="http://127.0.0.1:$(field "$line" health_port)"
  export ADMIN_URL="http://127.0.0.1:$(field "$line" admin_port)" ADMIN_AUTH_TOKEN="$admin_token"
  ctl_ca="$state/ca/ca-1.crt"
  ctl_log="$log"
}

# stop_controller: SIGTERM, wait (bounded); says how it ended.
stop_controller() {
  local i rc
  set +e
  if ! kill -0 "$ctl_pid" 2>/dev/null; then
    wait "$ctl_pid"; rc=$?
    ctl_exit="**gone before the end of the run (exit status $rc)**"
  else
    kill -TERM "$ctl_pid"
    for ((i = 0; i < 300; i++)); do kill -0 "$ctl_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$ctl_pid" 2>/dev/null; then
      kill -KILL "$ctl_pid"
      ctl_exit="**did not stop within 30 s of SIGTERM (killed)**"
    else
      wait "$ctl_pid"; rc=$?
      ctl_exit="exit $rc after SIGTERM"
    fi
  fi
  set -e
  ctl_pid=""
}

token() { "$controller" token create --role tunneler --name bench- --prefix --uses "$1"; }

log_problems() { # warnings and errors the controller logged, counted by message
  { grep -E 'level=(warn|error)' "$1" || true; } | sed 's/.*msg="\([^"]*\)".*/\1/' |
    sort | uniq -c | sort -rn | head -5 |
    awk '{c = $1; $1 = ""; printf "%s%s ×%s", (NR > 1 ? "; " : ""), c, $0}'
}

# ---- 1. enrollment -------------------------------------------------------------
say "enrollment: $enroll_count enrollments, $enroll_conc in flight"
start_controller enroll
tok="$(token $((enroll_count + serial_count)))"
c0=$(cpu_ticks "$ctl_pid"); w0=$(io_field "$ctl_pid" wchar); s0=$(io_field "$ctl_pid" syscw)
b0=$(busy_ticks); t0=$(now); q0=$(runq_ms "$ctl_pid"); p0=$(pg_ticks); pw0=$(pg_written)
set +e
"$load" enroll --controller "$ctl_addr" --ca "$ctl_ca" --trust-domain "$trust_domain" \
  --token "$tok" --count "$enroll_count" --concurrency "$enroll_conc" --timeout 120 \
  >"$work/enroll.out" 2>"$work/enroll.err"
enroll_rc=$?
set -e
c1=$(cpu_ticks "$ctl_pid"); w1=$(io_field "$ctl_pid" wchar); s1=$(io_field "$ctl_pid" syscw)
b1=$(busy_ticks); t1=$(now); q1=$(runq_ms "$ctl_pid"); p1=$(pg_ticks); pw1=$(pg_written)
# One at a time: the latency a single agent sees on an idle controller
# (this is where a Nagle/delayed-ACK stall would show: ~40 ms each).
serial="$("$load" enroll --controller "$ctl_addr" --ca "$ctl_ca" --trust-domain "$trust_domain" \
  --token "$tok" --count "$serial_count" --concurrency 1 --name-prefix bench-1- --timeout 60 \
  2>&1 | grep '^enroll ' || true)"
enroll_problems="$(log_problems "$ctl_log")"
stop_controller
enroll_exit="$ctl_exit"
cat "$work/enroll.out" "$work/enroll.err" >&2
prep="$(grep '^prepare ' "$work/enroll.out" || true)"
res="$(grep '^enroll ' "$work/enroll.out" || true)"
[ -n "$res" ] || die "enrollment run produced no result (exit $enroll_rc)"
e_ok=$(field "$res" ok)
e_rate=$(field "$res" per_s)
e_cpu_ms=$(calc "%.2f" "($c1 - $c0) / $clk_tck * 1000 / ($e_ok > 0 ? $e_ok : 1)")
e_ctl_util=$(calc "%.0f" "($c1 - $c0) / $clk_tck / $(field "$res" seconds) * 100")
e_cli_util=$(calc "%.0f" "$(field "$res" client_cpu_s) / $(field "$res" seconds) * 100")
e_gen_cpu=$(field "$(grep '^process ' "$work/enroll.out" || true)" cpu_s)
e_runq=$(calc "%.0f" "($q1 - $q0) / 1000 / ($t1 - $t0) * 100")
e_ceiling=$(calc "%.0f" "$e_ok / (($c1 - $c0) / $clk_tck)")
e_other=$(at_least_0 "$(calc "%.1f" "(($b1 - $b0) / $clk_tck - ($c1 - $c0) / $clk_tck - ($p1 - $p0) / $clk_tck - ${e_gen_cpu:-0}) / ($t1 - $t0) * 100")")
e_pg_ms=$(calc "%.2f" "($p1 - $p0) / $clk_tck * 1000 / ($e_ok > 0 ? $e_ok : 1)")
e_pg_kb=$(calc "%.1f" "($pw1 - $pw0) / 1024 / ($e_ok > 0 ? $e_ok : 1)")
e_kb=$(calc "%.1f" "($w1 - $w0) / 1024 / ($e_ok > 0 ? $e_ok : 1)")
e_sysc=$(calc "%.1f" "($s1 - $s0) / ($e_ok > 0 ? $e_ok : 1)")
target=met; [ "${e_rate:-0}" -ge 1000 ] || target="NOT met"

# ---- 2. sessions ---------------------------------------------------------------
say "sessions: $sessions sessions over $identities identities, heartbeat $interval, hold ${hold}s"
start_controller sessions
tok="$(token "$identities")"
rss_idle=$(status_kb "$ctl_pid" VmRSS)
"$load" sessions --controller "$ctl_addr" --ca "$ctl_ca" --trust-domain "$trust_domain" \
  --token "$tok" --sessions "$sessions" --identities "$identities" \
  --concurrency "$session_conc" --interval "$interval_ms" --hold "$hold" \
  --max-errors $((sessions / 1000 + 5)) --timeout 240 \
  >"$work/sessions.out" 2>"$work/sessions.err" &
load_pid=$!

# Ramp: from the identities being enrolled to every session up.
for ((i = 0; i < 2400; i++)); do
  grep -q '^identities ' "$work/sessions.out" 2>/dev/null && break
  kill -0 "$load_pid" 2>/dev/null || break; sleep 0.05
done
r0=$(cpu_ticks "$ctl_pid"); rq0=$(runq_ms "$ctl_pid"); rt0=$(now)
for ((i = 0; i < 3600; i++)); do
  grep -q '^ready ' "$work/sessions.out" 2>/dev/null && break
  kill -0 "$load_pid" 2>/dev/null || break; sleep 0.05
done
ready=0; grep -q '^ready ' "$work/sessions.out" && ready=1
steady=""
if [ "$ready" = 1 ] && kill -0 "$ctl_pid" 2>/dev/null; then
  r1=$(cpu_ticks "$ctl_pid"); rq1=$(runq_ms "$ctl_pid"); rt1=$(now)
  sleep "$warmup"
  t0=$(now); c0=$(cpu_ticks "$ctl_pid"); g0=$(cpu_ticks "$load_pid"); b0=$(busy_ticks)
  q0=$(runq_ms "$ctl_pid")
  w0=$(io_field "$ctl_pid" wchar); s0=$(io_field "$ctl_pid" syscw)
  p0=$(pg_ticks); pw0=$(pg_written)
  h0=$(metric ztr_controller_heartbeats_total)
  sleep "$window"
  t1=$(now); c1=$(cpu_ticks "$ctl_pid"); g1=$(cpu_ticks "$load_pid"); b1=$(busy_ticks)
  q1=$(runq_ms "$ctl_pid")
  w1=$(io_field "$ctl_pid" wchar); s1=$(io_field "$ctl_pid" syscw)
  p1=$(pg_ticks); pw1=$(pg_written)
  h1=$(metric ztr_controller_heartbeats_total)
  live=$(metric ztr_controller_sessions)
  rss=$(status_kb "$ctl_pid" VmRSS); hwm=$(status_kb "$ctl_pid" VmHWM)
  dt=$(calc "%.3f" "$t1 - $t0")
  beats=$((h1 - h0))
  s_other=$(at_least_0 "$(calc "%.1f" "(($b1 - $b0) - ($c1 - $c0) - ($g1 - $g0) - ($p1 - $p0)) / $clk_tck / $dt * 100")")
  kill -0 "$ctl_pid" 2>/dev/null && steady=1
fi
set +e
wait "$load_pid"; sessions_rc=$?
set -e
load_pid=""
session_problems="$(log_problems "$ctl_log")"
stop_controller
sessions_exit="$ctl_exit"
cat "$work/sessions.out" "$work/sessions.err" >&2

ramp="$(grep '^ramp ' "$work/sessions.out" || true)"
hb="$(grep '^heartbeats ' "$work/sessions.out" || true)"
errs="$(grep '^errors ' "$work/sessions.out" || true)"
[ -n "$ramp" ] || die "session run produced no result (exit $sessions_rc)"

# ---- report --------------------------------------------------------------------
echo "One controller process (\`build/bin/controller\`, release build, default \`LOG_LEVEL=info\`,"
if [ "$store" = postgres ]; then
  echo "state in PostgreSQL ($("$PG_BIN/postgres" --version | sed 's/.*) //'), a local server started by the bench, \`fsync=off\`;"
  echo "its own CPU and writes measured beside the controller's) driven over loopback by"
else
  echo "SQLite state on $(df -PT "$work" | awk 'NR==2 {print $2}')) driven over loopback by"
fi
echo "\`bench/ctl_load.c\` (one thread, libev, the agents' own TLS and framing code) on the"
echo "same machine: the generator and the controller share its $(nproc) cores. Source:"
echo "\`bench/controller.sh\`; a fresh state directory for each part."
echo
# Other processes on a 2-core machine take CPU from both sides: say so where
# the numbers are read, not only in a table row.
worst_other=$(( e_other > ${s_other:-0} ? e_other : ${s_other:-0} ))
if [ "$worst_other" -ge 20 ]; then
  echo "**This run shared the machine:** other processes used up to ${worst_other}% of a core"
  echo "while it measured (rows \"everything else\" below), so rates and latencies are"
  echo "worse than on a quiet machine. The per-operation CPU figures are the stable ones."
  echo
fi
echo "### Enrollment"
echo
echo "$e_ok of $enroll_count enrollments, $enroll_conc in flight, one multi-use prefix token;"
echo "each is a fresh TCP connection + TLS 1.3 handshake (no client certificate) +"
echo "\`enroll\` with its own P-256 key and CSR → \`enrolled\`. Keys and CSRs were made"
echo "before the clock started: $(field "$prep" count) in $(field "$prep" seconds) s"
echo "($(field "$prep" per_s)/s on the generator). Latency is connect → \`enrolled\`."
echo
echo "| measurement | value |"
echo "|---|---|"
echo "| enrollments/s (target ≥ 1000: $target) | **$e_rate** |"
echo "| latency p50 / p99 / max | $(field "$res" p50_ms) / $(field "$res" p99_ms) / $(field "$res" max_ms) ms |"
echo "| one enrollment alone ($serial_count in a row), p50 / p99 | $(field "$serial" p50_ms) / $(field "$serial" p99_ms) ms |"
echo "| controller CPU per enrollment | $e_cpu_ms ms, i.e. a ceiling of ~$e_ceiling/s on one free core |"
echo "| where the time went | controller on CPU ${e_ctl_util}% of the run, runnable but waiting for a CPU ${e_runq}%; generator on CPU ${e_cli_util}% |"
if [ "$store" = postgres ]; then
  echo "| controller writes per enrollment | $e_kb KiB in $e_sysc write calls (log, and to the database's socket) |"
  echo "| PostgreSQL server per enrollment | $e_pg_ms ms of CPU, $e_pg_kb KiB written to disk |"
else
  echo "| controller writes per enrollment | $e_kb KiB in $e_sysc write calls (SQLite WAL + log) |"
fi
echo "| everything else on the machine | ${e_other}% of one core (should be ~0: other load skews the numbers; tick accounting makes a few % noise) |"
echo "| failures | $(field "$res" failed) (ctl_load exit $enroll_rc; controller $enroll_exit) |"
[ -n "$enroll_problems" ] && echo "| controller warnings/errors | $enroll_problems |"
echo
echo "### $sessions concurrent sessions, heartbeat every $interval"
echo
echo "$identities tunneler identities enrolled first, each used by"
echo "$((sessions / identities)) sessions (the controller accepts up to 4 sessions per node;"
echo "it keeps one \`nodes\` row per identity). Sessions open $session_conc at a time:"
echo "connect, mTLS handshake, \`hello\` → \`welcome\`. Then every session heartbeats every"
echo "$interval, phases spread evenly over the interval. CPU and RSS were sampled from"
echo "\`/proc\` over a ${window} s window that starts ${warmup} s after the last session came up."
echo
echo "| measurement | value |"
echo "|---|---|"
echo "| sessions up | $(field "$ramp" up) of $sessions (set-up failures: $(field "$ramp" failed)) |"
echo "| set-up rate | $(field "$ramp" per_s) sessions/s; latency p50 / p99 $(field "$ramp" p50_ms) / $(field "$ramp" p99_ms) ms |"
if [ -n "${r1:-}" ]; then
  echo "| controller CPU during the ramp | $(calc "%.2f" "($r1 - $r0) / $clk_tck * 1000 / $(field "$ramp" up)") ms per session set-up; on CPU $(calc "%.0f" "($r1 - $r0) / $clk_tck / ($rt1 - $rt0) * 100")% of the ramp, waiting for a CPU $(calc "%.0f" "($rq1 - $rq0) / 1000 / ($rt1 - $rt0) * 100")% |"
fi
if [ -n "$steady" ]; then
  echo "| sessions the controller reports (\`ztr_controller_sessions\`) | $live |"
  echo "| controller RSS | **$(calc "%.0f" "$rss / 1024") MiB** steady (idle before the run: $(calc "%.0f" "$rss_idle / 1024") MiB; peak $(calc "%.0f" "$hwm / 1024") MiB) → $(calc "%.1f" "($rss - $rss_idle) / $sessions") KiB per session |"
  echo "| controller CPU, steady | **$(calc "%.1f" "($c1 - $c0) / $clk_tck / $dt * 100")% of one core** for $(calc "%.0f" "$beats / $dt") heartbeats/s |"
  echo "| controller CPU per heartbeat | $(calc "%.0f" "($c1 - $c0) / $clk_tck * 1e6 / ($beats > 0 ? $beats : 1)") µs |"
  echo "| controller writes per heartbeat | $(calc "%.1f" "($w1 - $w0) / 1024 / ($beats > 0 ? $beats : 1)") KiB in $(calc "%.1f" "($s1 - $s0) / ($beats > 0 ? $beats : 1)") write calls |"
  if [ "$store" = postgres ]; then
    echo "| PostgreSQL server per heartbeat | $(calc "%.0f" "($p1 - $p0) / $clk_tck * 1e6 / ($beats > 0 ? $beats : 1)") µs of CPU, $(calc "%.2f" "($pw1 - $pw0) / 1024 / ($beats > 0 ? $beats : 1)") KiB written to disk |"
  fi
  echo "| generator CPU, steady | $(calc "%.1f" "($g1 - $g0) / $clk_tck / $dt * 100")% of one core |"
  echo "| everything else on the machine | ${s_other}% of one core; the controller waited for a CPU $(calc "%.1f" "($q1 - $q0) / 1000 / $dt * 100")% of the window |"
else
  echo "| steady phase | not sampled: the sessions never all came up, or the controller died |"
fi
echo "| heartbeat round trip after the ramp, p50 / p99 / max | $(field "$hb" hold_rtt_p50_ms) / $(field "$hb" hold_rtt_p99_ms) / $(field "$hb" hold_rtt_max_ms) ms |"
echo "| heartbeats sent / acked / missing | $(field "$hb" sent) / $(field "$hb" acked) / $(field "$hb" missing) |"
echo "| errors | $(field "$errs" total) (set-up $(field "$errs" setup_failed), dropped $(field "$errs" dropped), error frames $(field "$errs" error_frames), missing acks $(field "$errs" missing_acks)); ctl_load exit $sessions_rc; controller $sessions_exit |"
[ -n "$session_problems" ] && echo "| controller warnings/errors | $session_problems |"
for n in "${notes[@]}"; do echo; echo "$n"; done
[ "$enroll_rc" = 0 ] && [ "$sessions_rc" = 0 ] || say "ctl_load reported errors (enroll $enroll_rc, sessions $sessions_rc)"
exit 0
