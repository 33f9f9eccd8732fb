#!/usr/bin/env bash
# System calls per new stream, counted by strace -c on each agent while
# tcp_peer bench-connect opens and closes streams (one HTTP request each)
# through a tunneler's port forward for SECONDS (default 3). Counts, unlike
# times, do not depend on what else the machine runs. Usage:
#   bench/syscalls.sh [BUILD]      (default build: the release tree)
# Prints, per agent, streams, syscalls per stream and the top calls.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export ZTR_TEST_BIN="$root/${1:-build}/bin"
SECONDS_RUN="${SYSCALLS_SECONDS:-3}"
command -v strace >/dev/null || { echo "syscalls: strace is missing (apt-get install strace)" >&2; exit 1; }
. "$root/tests/e2e/lib.sh"; . "$root/tests/e2e/failure_modes/fm_helpers.sh"
dp_setup >/dev/null || exit 1
peer="$ZTR_TEST_BIN/../tests/tools/tcp_peer"
"$peer" bench-connect "127.0.0.1:$FWD" 1 4 >/dev/null   # the session is up, the pools warm
for who in connector:DC1 tunneler:LAPTOP; do
  name=${who%%:*}; pid_var=${who#*:}_PID; pid=${!pid_var}
  strace -c -f -o "$E2E_TMP/strace.$name" -p "$pid" 2>/dev/null & st=$!
  sleep 0.5
  "$peer" bench-connect "127.0.0.1:$FWD" "$SECONDS_RUN" 4 >"$E2E_TMP/bc.$name"
  kill -INT "$st"; wait "$st"
  streams=$(tr ' ' '\n' <"$E2E_TMP/bc.$name" | sed -n 's/^requests=//p')
  total=$(awk '$NF == "total" {print $(NF-2)}' "$E2E_TMP/strace.$name")
  echo "$name: streams=$streams syscalls=$total per_stream=$(awk -v t="$total" -v s="$streams" 'BEGIN {printf "%.1f", t / s}')"
  awk -v s="$streams" '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" {
      errs = (NF == 6) ? $5 : 0; printf "  %-12s %5.2f per stream (%.2f failing)\n", $NF, $4 / s, errs / s }' \
    "$E2E_TMP/strace.$name" | head -12
done
