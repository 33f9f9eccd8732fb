# shellcheck shell=bash
# Helpers for the fault suite (tests/faults/*.sh), on top of the e2e
# helpers: the LD_PRELOAD injector (shim/fault_shim.c, built as
# build/<tree>/tests/faults/libfault_shim.so) and its settings.
. "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
FAULT_SHIM="$ZTR_TEST_BIN/../tests/faults/libfault_shim.so"
[ -f "$FAULT_SHIM" ] || { echo "no $FAULT_SHIM (make all builds it)" >&2; exit 1; }
FAULT_RUNS=${FAULT_RUNS:-0}

# fault_env OP ACTION [PATH-TEXT] [NTH] [TIMES] [WHILE-FILE]: sets FAULT_ENV,
# the VAR=value words that load the injector into one process (pass them to
# start_agent / start_controller / env). OP: rename|fsync|write|open;
# ACTION: crash|crash-after|enospc|eio|delay:<ms>. Every matching call is
# traced to $FAULT_TRACE (one line each), so a test can count the durable
# writes of an operation and then crash at each one in turn.
fault_env() {
  FAULT_TRACE="$E2E_TMP/fault-trace.$((++FAULT_RUNS))"
  : >"$FAULT_TRACE"
  FAULT_ENV=(LD_PRELOAD="$FAULT_SHIM"
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"
    ZTR_FAULT_OP="$1" ZTR_FAULT_ACTION="$2" ZTR_FAULT_PATH="${3:-}"
    ZTR_FAULT_NTH="${4:-1}" ZTR_FAULT_TIMES="${5:-1}" ZTR_FAULT_TRACE="$FAULT_TRACE")
  [ -n "${6:-}" ] && FAULT_ENV+=(ZTR_FAULT_WHILE="$6")
  return 0
}

# fault_trace_env OP [PATH-TEXT]: the injector counting OP calls without
# faulting any (NTH far beyond), traced to $FAULT_TRACE.
fault_trace_env() { fault_env "$1" enospc "${2:-}" 1000000000 1; }

# fault_count: how many matching calls the last traced run made.
fault_count() { wc -l <"$FAULT_TRACE" | tr -d ' '; }

# clock_env FILE: sets CLOCK_ENV, the VAR=value words that load the
# injector for its wall-clock offset only (ZTR_FAULT_CLOCK_FILE): FILE
# holds signed seconds added to CLOCK_REALTIME, gettimeofday and time (what
# wolfSSL checks certificates with); the test rewrites it (clock_jump) while
# the process runs. Several processes sharing FILE share one clock, like
# daemons on one host.
clock_env() {
  [ -f "$1" ] || echo 0 >"$1"
  CLOCK_ENV=(LD_PRELOAD="$FAULT_SHIM" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0"
    ZTR_FAULT_CLOCK_FILE="$1")
}

# clock_jump FILE SECONDS: the wall clock of every process using FILE
# jumps to SECONDS from true time (negative: back); seen within 50 ms.
clock_jump() { echo "$2" >"$1.tmp" && mv "$1.tmp" "$1"; sleep 0.1; }

# fault_count_of TRACE: how many matching calls a trace file holds.
fault_count_of() { wc -l <"$1" | tr -d ' '; }

# relay_pair RESOURCES [CONNECTOR-SETTING ...] [-- TUNNELER-SETTING ...]:
# with a controller running and an echo peer started (PEER_PORT), binds
# each resource of the comma list RESOURCES (the first one is the one the
# stream uses) to connector dc1 served by the echo peer, starts dc1 and
# tunneler laptop (granted the first resource, forwarding $FWD to it) with
# the settings given, and checks a stream goes through. Sets DC1_* and
# LAPTOP_* (keep_agent), FWD; false when something did not start.
relay_pair() {
  local list="$1" first r served="" conn=() tun=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do conn+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  tun=("$@")
  first="${list%%,*}"
  for r in ${list//,/ }; do
    ctl resource add "$r" --connector dc1 >/dev/null
    served+="${served:+,}$r=127.0.0.1:$PEER_PORT"
  done
  start_agent connector dc1 "${conn[@]}" \
    ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
    RESOURCES="$served"
  local rc=$?
  check "connector starts" $rc
  [ "$rc" -eq 0 ] || return 1
  keep_agent DC1
  ctl allow --tunneler laptop --resource "$first" >/dev/null
  FWD=$(free_port)
  start_agent tunneler laptop "${tun[@]}" \
    ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
    FORWARDS="127.0.0.1:$FWD=$first"
  rc=$?
  check "tunneler starts" $rc
  [ "$rc" -eq 0 ] || return 1
  keep_agent LAPTOP
  wait_through "127.0.0.1:$FWD"
  check "a stream goes through" $?
}
