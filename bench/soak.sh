#!/usr/bin/env bash
# A mixed soak of the data plane (release build), SOAK_SECONDS long
# (default 1800): at once and all the time
#   bulk    tcp_peer read of 200 MB from a source resource at 40 MB/s, again and again
#   small   tcp_peer bench-connect, 4 streams of one HTTP request each in flight,
#           2 s on, 2 s off
#   idle    SOAK_IDLE (500) streams to an echo resource, opened at the start
#           (each proven by an echoed byte) and held to the end
#   renew   60 s certificates: both agents renew about every 30 s
#   push    an allowlist change (another tunneler allowed, then denied) every 10 s
# Every SOAK_SAMPLE_SECONDS (10) the connector's and the tunneler's RSS,
# descriptors and CPU time go to bench/soak.csv; bench/soak.png plots them;
# stdout gets a markdown section. Targets: RSS growth <= 1 MiB from the
# first minute to the end, no failed stream, no reconnect. `make soak`.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export ZTR_TEST_BIN="$root/${SOAK_BUILD:-build}/bin"
DURATION="${SOAK_SECONDS:-1800}"
SAMPLE="${SOAK_SAMPLE_SECONDS:-10}"
IDLE="${SOAK_IDLE:-500}"
csv="$root/bench/soak.csv"; png="$root/bench/soak.png"
# One loop per agent: every stream rides on the one session the figures
# describe (bench/workers.sh compares loops).
export WORKERS=1
. "$root/tests/e2e/lib.sh"; . "$root/bench/samples.sh"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
peer="$ZTR_TEST_BIN/../tests/tools/tcp_peer"
BULK=200000000

start_controller ctl SVID_TTL=60s HEARTBEAT_INTERVAL=1s >/dev/null || exit 1
start_peer source "$BULK" >/dev/null || exit 1; SRC_PORT=$PEER_PORT
start_peer http >/dev/null || exit 1; HTTP_PORT=$PEER_PORT
start_peer echo >/dev/null || exit 1; ECHO_PORT=$PEER_PORT
for r in src web echo; do ctl resource add "$r" --connector dc1 >/dev/null; done
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="src=127.0.0.1:$SRC_PORT,web=127.0.0.1:$HTTP_PORT,echo=127.0.0.1:$ECHO_PORT" >/dev/null || exit 1
keep_agent DC1
for r in src web echo; do ctl allow --tunneler laptop --resource "$r" >/dev/null; done
FWD_SRC=$(free_port); FWD_WEB=$(free_port); FWD_ECHO=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD_SRC=src,127.0.0.1:$FWD_WEB=web,127.0.0.1:$FWD_ECHO=echo" SOCKS5_LISTEN=off >/dev/null || { tail -3 "$AGENT_LOG" >&2; exit 1; }
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10 || { echo "soak: no connector list" >&2; exit 1; }
"$peer" bench-connect "127.0.0.1:$FWD_WEB" 2 4 >/dev/null

end=$(( $(date +%s) + DURATION ))
"$peer" hold "127.0.0.1:$FWD_ECHO" "$IDLE" "$((DURATION + 30))" >"$E2E_TMP/idle.out" 2>&1 &
IDLE_PID=$!; E2E_PIDS+=("$IDLE_PID")
( n=0; f=0; while [ "$(date +%s)" -lt "$end" ]; do
    if "$peer" read "127.0.0.1:$FWD_SRC" "$BULK" 40000000 >/dev/null 2>&1; then n=$((n + 1)); else f=$((f + 1)); fi
    echo "$n $f" >"$E2E_TMP/bulk.count"; done ) &
E2E_PIDS+=("$!")
( n=0; e=0; while [ "$(date +%s)" -lt "$end" ]; do
    # Half the time: the soak is about what stays behind, not speed.
    out="$("$peer" bench-connect "127.0.0.1:$FWD_WEB" 2 4 2>&1)"; sleep 2
    n=$((n + $(tr ' ' '\n' <<<"$out" | sed -n 's/^requests=//p')))
    e=$((e + $(tr ' ' '\n' <<<"$out" | sed -n 's/^errors=//p' | grep . || echo 1)))
    echo "$n $e" >"$E2E_TMP/small.count"; done ) &
E2E_PIDS+=("$!")
( i=0; while [ "$(date +%s)" -lt "$end" ]; do
    if [ $((i % 2)) -eq 0 ]; then ctl allow --tunneler other --resource web >/dev/null
    else ctl deny --tunneler other --resource web >/dev/null; fi
    i=$((i + 1)); echo "$i" >"$E2E_TMP/push.count"; sleep 10; done ) &
E2E_PIDS+=("$!")

val() { cat "$E2E_TMP/$1.count" 2>/dev/null || echo "0 0"; }
echo "seconds,connector_rss_kib,tunneler_rss_kib,connector_fds,tunneler_fds,connector_cpu_s,tunneler_cpu_s,bulk_done,bulk_failed,small_streams,small_errors,pushes,renewals" >"$csv"
start=$(date +%s)
while [ "$(date +%s)" -lt "$end" ]; do
  sleep "$SAMPLE"
  kill -0 "$DC1_PID" "$LAPTOP_PID" 2>/dev/null || { echo "soak: an agent died" >&2; break; }
  read -r bd bf < <(val bulk); read -r sn se < <(val small)
  renewals=$(( $(count_lines "$DC1_LOG" 'msg="certificate renewed"') + $(count_lines "$LAPTOP_LOG" 'msg="certificate renewed"') ))
  echo "$(( $(date +%s) - start )),$(rss "$DC1_PID"),$(rss "$LAPTOP_PID"),$(fds "$DC1_PID"),$(fds "$LAPTOP_PID"),$(cpu "$DC1_PID"),$(cpu "$LAPTOP_PID"),$bd,$bf,$sn,$se,$(cat "$E2E_TMP/push.count" 2>/dev/null || echo 0),$renewals" >>"$csv"
done
sleep 2
idle_ok=no; kill -0 "$IDLE_PID" 2>/dev/null && idle_ok=yes
reconnects=$(count_lines "$LAPTOP_LOG" 'msg="data session closed"')

plot_memory "$png" "$csv" "ztr mixed soak: bulk + small streams + $IDLE idle streams + renewals + allowlist pushes" "seconds" 1 2 3 4 5
# From the sample at about one minute (pools and buffers warm) to the last.
base_row=$(awk -F, 'NR > 1 && $1 >= 60 {print NR; exit}' "$csv"); base_row=${base_row:-2}
read -r c1 t1 cf1 tf1 < <(sed -n "${base_row}p" "$csv" | awk -F, '{print $2, $3, $4, $5}')
IFS=, read -r secs cN tN cfN tfN ccpu tcpu bd bf sn se pushes renewals < <(tail -1 "$csv")
cmax=$(tail -n +2 "$csv" | awk -F, 'm < $2 {m = $2} END {print m}')
tmax=$(tail -n +2 "$csv" | awk -F, 'm < $3 {m = $3} END {print m}')
echo "$secs s of mixed load through one tunneler → connector session, release build, 60 s"
echo "certificates (both agents renew about every 30 s): bulk reads of 200 MB at 40 MB/s one after"
echo "another, 4 small streams (one HTTP request each) in flight 2 s of every 4, $IDLE idle streams held"
echo "throughout, an allowlist push every 10 s. Source: \`bench/soak.sh\` (\`make soak\`); samples every"
echo "${SAMPLE} s in \`bench/soak.csv\`, plotted in \`bench/soak.png\`."
echo
echo "| measurement | connector | tunneler |"
echo "|---|---|---|"
echo "| RSS at about 1 min → at the end (max) | $c1 → $cN ($cmax) KiB | $t1 → $tN ($tmax) KiB |"
echo "| RSS growth (target ≤ 1 MiB) | $((cN - c1)) KiB: $(growth_verdict $((cN - c1))) | $((tN - t1)) KiB: $(growth_verdict $((tN - t1))) |"
echo "| open descriptors at about 1 min → at the end | $cf1 → $cfN | $tf1 → $tfN |"
echo "| CPU time over the run | $ccpu s | $tcpu s |"
echo "| bulk reads of 200 MB completed / failed | $bd / $bf | |"
echo "| small streams / failed | $sn / $se | |"
echo "| idle streams still held at the end | $([ "$idle_ok" = yes ] && echo "all $IDLE" || echo "NO: the holder exited ($(cat "$E2E_TMP/idle.out"))") | |"
echo "| allowlist pushes, certificate renewals (both agents) | $pushes, $renewals | |"
echo "| data sessions closed (reconnects) | $reconnects | |"
finish >/dev/null
[ "$bf" -eq 0 ] && [ "$se" -eq 0 ] && [ "$idle_ok" = yes ] && [ "$reconnects" -eq 0 ] &&
  [ $((cN - c1)) -le 1024 ] && [ $((tN - t1)) -le 1024 ]
