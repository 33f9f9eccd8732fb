#!/usr/bin/env bash
# Stream churn: CHURN_STREAMS (default 1 000 000) streams opened and closed
# through a tunneler's port forward to a connector (one HTTP request each,
# tcp_peer bench-connect, CHURN_CONCURRENCY in flight) by the release
# build, in rounds of CHURN_ROUND_SECONDS. After each round the connector's
# and tunneler's resident memory, open descriptors and CPU time are read
# from /proc. Writes bench/churn.csv and bench/churn.png (gnuplot, installed
# when missing and root) and prints a markdown section: the targets are
# RSS growth <= 1 MiB over the run and 0 failed streams. `make churn`.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export ZTR_TEST_BIN="$root/${CHURN_BUILD:-build}/bin"
TARGET="${CHURN_STREAMS:-1000000}"
ROUND="${CHURN_ROUND_SECONDS:-10}"
CONC="${CHURN_CONCURRENCY:-16}"
csv="$root/bench/churn.csv"
png="$root/bench/churn.png"
# One loop per agent: every stream rides on the one session the figures
# describe (bench/workers.sh compares loops).
export WORKERS=1
. "$root/tests/e2e/lib.sh"; . "$root/bench/samples.sh"; . "$root/tests/e2e/failure_modes/fm_helpers.sh"
dp_setup >/dev/null 2>&1 || { echo "churn: the daemons did not start" >&2; exit 1; }
peer="$ZTR_TEST_BIN/../tests/tools/tcp_peer"
"$peer" bench-connect "127.0.0.1:$FWD" 2 "$CONC" >/dev/null   # warm: the session, the pools
echo "streams,seconds,connector_rss_kib,tunneler_rss_kib,connector_fds,tunneler_fds,connector_cpu_s,tunneler_cpu_s,errors" >"$csv"
sample() { echo "$1,$2,$(rss "$DC1_PID"),$(rss "$LAPTOP_PID"),$(fds "$DC1_PID"),$(fds "$LAPTOP_PID"),$(cpu "$DC1_PID"),$(cpu "$LAPTOP_PID"),$3" >>"$csv"; }
done_streams=0; errors=0; start=$(date +%s.%N)
sample 0 0 0
while [ "$done_streams" -lt "$TARGET" ]; do
  out="$("$peer" bench-connect "127.0.0.1:$FWD" "$ROUND" "$CONC")" || { echo "churn: bench-connect failed: $out" >&2; exit 1; }
  n=$(tr ' ' '\n' <<<"$out" | sed -n 's/^requests=//p'); e=$(tr ' ' '\n' <<<"$out" | sed -n 's/^errors=//p')
  done_streams=$((done_streams + n)); errors=$((errors + e))
  kill -0 "$DC1_PID" "$LAPTOP_PID" 2>/dev/null || { echo "churn: an agent died" >&2; exit 1; }
  sample "$done_streams" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')" "$errors"
done
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

plot_memory "$png" "$csv" "ztr stream churn: $done_streams streams, concurrency $CONC" "streams opened and closed" 1 3 4 5 6

# Growth: from the first round's sample (pools and buffers warm) to the last.
read -r c1 t1 cf1 tf1 < <(sed -n 3p "$csv" | awk -F, '{print $3, $4, $5, $6}')
read -r cN tN cfN tfN ccpu tcpu < <(tail -1 "$csv" | awk -F, '{print $3, $4, $5, $6, $7, $8}')
cmax=$(tail -n +3 "$csv" | awk -F, 'm < $3 {m = $3} END {print m}')
tmax=$(tail -n +3 "$csv" | awk -F, 'm < $4 {m = $4} END {print m}')
echo "$done_streams streams opened and closed through one tunneler → connector session (each one"
echo "HTTP request to a local resource; \`tcp_peer bench-connect\`, $CONC in flight) in $elapsed s, by the"
echo "release build. Source: \`bench/churn.sh\` (\`make churn\`); samples in \`bench/churn.csv\`,"
echo "plotted in \`bench/churn.png\`."
echo
echo "| measurement | connector | tunneler |"
echo "|---|---|---|"
echo "| RSS after the first round → at the end (max) | $c1 → $cN ($cmax) KiB | $t1 → $tN ($tmax) KiB |"
echo "| RSS growth (target ≤ 1 MiB) | $((cN - c1)) KiB: $(growth_verdict $((cN - c1))) | $((tN - t1)) KiB: $(growth_verdict $((tN - t1))) |"
echo "| open descriptors after the first round → at the end | $cf1 → $cfN | $tf1 → $tfN |"
echo "| CPU time over the run | $ccpu s | $tcpu s |"
echo "| failed streams (target 0) | $errors | |"
echo "| streams/s over the run | $(awk -v n="$done_streams" -v s="$elapsed" 'BEGIN {printf "%.0f", n / s}') | |"
finish >/dev/null
[ "$errors" -eq 0 ] && [ $((cN - c1)) -le 1024 ] && [ $((tN - t1)) -le 1024 ]
