# shellcheck shell=bash
# Helpers for e2e scripts: each script sources this, runs the real binaries
# from $ZTR_TEST_BIN and calls pass/fail through these assertions.
set -uo pipefail
: "${ZTR_TEST_BIN:?ZTR_TEST_BIN must point at build/<tree>/bin}"
E2E_TMP="$(mktemp -d)"
trap 'rm -rf "$E2E_TMP"' EXIT
E2E_FAILURES=0
E2E_CHECKS=0

# run CMD...: captures stdout, stderr and the exit status of one command.
run() {
  "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
  RUN_STATUS=$?
  RUN_OUT="$(cat "$E2E_TMP/out")"
  RUN_ERR="$(cat "$E2E_TMP/err")"
}

check() { # check DESCRIPTION CONDITION-RESULT(0/1)
  E2E_CHECKS=$((E2E_CHECKS + 1))
  if [ "$2" -ne 0 ]; then
    E2E_FAILURES=$((E2E_FAILURES + 1))
    echo "  FAIL: $1" >&2
    echo "    status=$RUN_STATUS stdout=[$RUN_OUT] stderr=[$RUN_ERR]" >&2
  fi
}

expect_status() { [ "$RUN_STATUS" -eq "$1" ]; check "$2 (exit $1)" $?; }
expect_out() { [ "$RUN_OUT" = "$1" ]; check "$2 (stdout = $1)" $?; }
expect_out_has() { grep -qF -- "$1" <<<"$RUN_OUT"; check "$2 (stdout has: $1)" $?; }
expect_err() { [ "$RUN_ERR" = "$1" ]; check "$2 (stderr = $1)" $?; }
expect_err_has() { grep -qF -- "$1" <<<"$RUN_ERR"; check "$2 (stderr has: $1)" $?; }
expect_file_mode() {
  local mode; mode="$(stat -c %a "$1" 2>/dev/null)"
  [ "$mode" = "$2" ]; check "$3 ($1 mode $2, got ${mode:-none})" $?
}

finish() {
  echo "  $E2E_CHECKS checks, $E2E_FAILURES failed"
  [ "$E2E_FAILURES" -eq 0 ]
}

# ---- daemons ----------------------------------------------------------------
# Background processes started here are stopped when the script exits.
E2E_PIDS=()
trap 'for p in "${E2E_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$E2E_TMP"' EXIT

# wait_for_line FILE PATTERN [SECONDS]: waits until FILE has a line with PATTERN.
wait_for_line() {
  local file="$1" pattern="$2" limit="${3:-20}" i
  for ((i = 0; i < limit * 20; i++)); do
    grep -qF -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# wait_for_re FILE REGEX [SECONDS]: wait_for_line with an extended regex.
wait_for_re() {
  local file="$1" pattern="$2" limit="${3:-20}" i
  for ((i = 0; i < limit * 20; i++)); do
    grep -qE -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# log_value FILE KEY: the value of KEY=... on the last "controller started" line.
log_value() {
  grep -F 'msg="controller started"' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

E2E_ADMIN_TOKEN="e2e-admin-token-0123456789abcdef"

# start_controller NAME [VAR=value ...]: runs build/bin/controller with a
# state dir under $E2E_TMP/NAME, loopback ports chosen by the kernel, a short
# heartbeat; sets CTL_ADDR, ADMIN_URL (https:// with ADMIN_TLS=true),
# HEALTH_URL, CTL_PID, CTL_LOG, CTL_STATE.
start_controller() {
  local name="$1"; shift
  CTL_STATE="$E2E_TMP/$name"
  E2E_STARTS=$((${E2E_STARTS:-0} + 1))
  CTL_LOG="$E2E_TMP/$name.$E2E_STARTS.log"   # one log per start: ports differ
  mkdir -p "$CTL_STATE"
  env TRUST_DOMAIN=example.org STATE_DIR="$CTL_STATE" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 HEARTBEAT_INTERVAL=300ms \
    ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" "$@" "$ZTR_TEST_BIN/controller" >>"$CTL_LOG" 2>&1 &
  CTL_PID=$!
  E2E_PIDS+=("$CTL_PID")
  if ! wait_for_line "$CTL_LOG" 'msg="controller started"' 20; then
    echo "controller did not start:" >&2; tail -5 "$CTL_LOG" >&2; return 1
  fi
  CTL_ADDR="127.0.0.1:$(log_value "$CTL_LOG" control_port)"
  local scheme=http
  [ "$(log_value "$CTL_LOG" admin_tls)" = true ] && scheme=https
  ADMIN_URL="$scheme://127.0.0.1:$(log_value "$CTL_LOG" admin_port)"
  HEALTH_URL="http://127.0.0.1:$(log_value "$CTL_LOG" health_port)"
  export ADMIN_URL ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN"
}

# stop_controller: SIGTERM and wait; sets STOP_STATUS.
stop_controller() {
  kill -TERM "$CTL_PID" 2>/dev/null
  wait "$CTL_PID"
  STOP_STATUS=$?
}

# start_json_controller LOG STATE_DIR [VAR=value ...]: a controller logging
# LOG_FORMAT=json to LOG, its PID in CTL_PID; checks that it started.
start_json_controller() {
  local log="$1" state="$2"
  shift 2
  env TRUST_DOMAIN=example.org STATE_DIR="$state" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=off ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
    LOG_FORMAT=json "$@" "$ZTR_TEST_BIN/controller" 2>"$log" &
  CTL_PID=$!
  E2E_PIDS+=("$CTL_PID")
  wait_for_line "$log" '"msg":"controller started"' 20
  check "the controller starts with LOG_FORMAT=json" $?
}

# json_start_value LOG KEY: KEY of the "controller started" line of a JSON log.
json_start_value() {
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("msg") == "controller started": print(o[sys.argv[2]])' "$1" "$2" 2>/dev/null
}

ctl() { "$ZTR_TEST_BIN/controller" "$@"; }
probe() { "$ZTR_TEST_BIN/../tests/tools/ctl_probe" "$@"; }

# ---- agents -------------------------------------------------------------------

# check() shows the last run's output: defined even before the first run,
# since agent scripts check many things that are not a run.
RUN_STATUS=${RUN_STATUS:-0} RUN_OUT=${RUN_OUT:-} RUN_ERR=${RUN_ERR:-}

# free_port: a loopback TCP port nothing uses right now.
free_port() {
  local port used
  used="$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://')"
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 20000))
    grep -qx "$port" <<<"$used" || { echo "$port"; return 0; }
  done
  return 1
}

# agent_env ROLE NAME [VAR=value ...]: fills AGENT_ENV with the settings of
# an agent talking to the controller of start_controller (STATE_DIR
# $E2E_TMP/agent-NAME, /health on a kernel-chosen loopback port, short
# reconnect delays, a connector's CONNECTOR_LISTEN on a free loopback port,
# no SOCKS5 server on a tunneler);
# the VAR=value pairs come last, so they override any of these. Sets
# AGENT_STATE and AGENT_LOG (a new file for every start).
agent_env() {
  local role="$1" name="$2"; shift 2
  AGENT_STATE="$E2E_TMP/agent-$name"
  E2E_STARTS=$((${E2E_STARTS:-0} + 1))
  AGENT_LOG="$E2E_TMP/agent-$name.$E2E_STARTS.log"
  AGENT_ENV=(TRUST_DOMAIN=example.org STATE_DIR="$AGENT_STATE" NODE_NAME="$name"
    HEALTH_LISTEN=127.0.0.1:0 CONTROLLER_ADDR="$CTL_ADDR" CONTROLLER_CA="$CTL_STATE/ca/ca-1.crt"
    RECONNECT_MIN_DELAY=50ms RECONNECT_MAX_DELAY=300ms RECONNECT_ATTEMPTS=20)
  [ "$role" = connector ] && AGENT_ENV+=(CONNECTOR_LISTEN="127.0.0.1:$(free_port)")
  # Tunnelers default to a SOCKS5 server on 127.0.0.1:1080; several run at
  # once here, so a script that wants one names its port.
  [ "$role" = tunneler ] && AGENT_ENV+=(SOCKS5_LISTEN=off)
  AGENT_ENV+=("$@")
}

# start_agent ROLE NAME [VAR=value ...]: runs $ZTR_TEST_BIN/ROLE in the
# background with agent_env's settings (ENROLLMENT_TOKEN=... for a first
# start), stopped when the script exits. Waits for `msg="agent started"`;
# sets AGENT_PID, AGENT_LOG, AGENT_STATE, AGENT_HEALTH_URL. AGENT_STATUS is
# 255 while the agent runs; if it exited before it started, start_agent
# returns 1 with its exit status there.
start_agent() {
  local role="$1" i
  agent_env "$@"
  AGENT_HEALTH_URL=""
  AGENT_STATUS=255
  env "${AGENT_ENV[@]}" "$ZTR_TEST_BIN/$role" >>"$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
  E2E_PIDS+=("$AGENT_PID")
  for ((i = 0; i < 400; i++)); do
    if grep -qF 'msg="agent started"' "$AGENT_LOG" 2>/dev/null; then
      AGENT_HEALTH_URL="http://127.0.0.1:$(grep -F 'msg="agent started"' "$AGENT_LOG" | tail -1 |
        tr ' ' '\n' | sed -n 's/^health_port=//p')"
      return 0
    fi
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      wait "$AGENT_PID"; AGENT_STATUS=$?
      return 1
    fi
    sleep 0.05
  done
  echo "$role $2 did not start:" >&2; tail -5 "$AGENT_LOG" >&2
  return 1
}

# run_agent ROLE NAME [VAR=value ...]: runs the agent in the foreground
# until it exits (at most 30 s), like run: RUN_STATUS, RUN_OUT, RUN_ERR (its
# log); the log is kept in AGENT_LOG too.
run_agent() {
  local role="$1"
  agent_env "$@"
  run timeout 30 env "${AGENT_ENV[@]}" "$ZTR_TEST_BIN/$role"
  printf '%s\n%s\n' "$RUN_OUT" "$RUN_ERR" >"$AGENT_LOG"
}

# stop_agent [PID]: SIGTERM and wait (default $AGENT_PID); sets AGENT_STATUS.
stop_agent() {
  local pid="${1:-$AGENT_PID}"
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  AGENT_STATUS=$?
}

# wait_agent_exit [SECONDS] [PID]: waits for the agent to exit by itself and
# sets AGENT_STATUS; after SECONDS it is killed and AGENT_STATUS is 255.
wait_agent_exit() {
  local limit="${1:-10}" pid="${2:-$AGENT_PID}" i
  for ((i = 0; i < limit * 20; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid"; AGENT_STATUS=$?
      return 0
    fi
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  AGENT_STATUS=255
  return 1
}

# health [URL]: GET URL/health (default $AGENT_HEALTH_URL); sets HEALTH_CODE
# and HEALTH_BODY (compact JSON).
health() {
  local url="${1:-$AGENT_HEALTH_URL}" out
  out="$(curl -s -m 5 -w '\n%{http_code}' "$url/health")"
  HEALTH_CODE="${out##*$'\n'}"
  HEALTH_BODY="${out%$'\n'*}"
}

# json_value KEY [JSON]: the first "KEY": scalar of JSON (default
# $HEALTH_BODY), unquoted; enough for /health, whose keys that repeat
# (state, connected) carry the same value everywhere.
json_value() {
  grep -o "\"$1\":\(\"[^\"]*\"\|[^,}]*\)" <<<"${2:-$HEALTH_BODY}" | head -1 |
    sed -e "s/^\"$1\"://" -e 's/^"\(.*\)"$/\1/'
}

# wait_for_state STATE [SECONDS] [URL]: polls /health until it reports STATE
# (HEALTH_CODE and HEALTH_BODY hold the last answer).
wait_for_state() {
  local want="$1" limit="${2:-20}" url="${3:-$AGENT_HEALTH_URL}" i
  for ((i = 0; i < limit * 20; i++)); do
    health "$url"
    [ "$(json_value state)" = "$want" ] && return 0
    sleep 0.05
  done
  return 1
}

# count_lines FILE... TEXT: lines containing TEXT in the files (0 if none).
count_lines() {
  local text="${*: -1}"
  cat "${@:1:$#-1}" 2>/dev/null | grep -cF -- "$text"
}

# log_epoch LINE: the ts= of a log line as Unix seconds.
log_epoch() { date -u -d "$(sed -n 's/^ts=\([^ ]*\).*/\1/p' <<<"$1")" +%s; }

# ---- data plane -----------------------------------------------------------------

# tcp_peer MODE ...: the test resource/client program (tests/tools/tcp_peer.c).
tcp_peer() { "$ZTR_TEST_BIN/../tests/tools/tcp_peer" "$@"; }

# start_peer MODE ARGS...: a tcp_peer server on a kernel-chosen loopback port
# (its LISTEN argument is 127.0.0.1:0), stopped when the script exits; sets
# PEER_PORT and PEER_PID.
start_peer() {
  local mode="$1" out i; shift
  out="$E2E_TMP/peer.$mode.$RANDOM"
  # The program itself, not the shell function: $! must be its PID so the
  # exit trap stops it.
  "$ZTR_TEST_BIN/../tests/tools/tcp_peer" "$mode" 127.0.0.1:0 "$@" >"$out" 2>&1 &
  PEER_PID=$!
  E2E_PIDS+=("$PEER_PID")
  for ((i = 0; i < 100; i++)); do
    PEER_PORT="$(sed -n 's/^listening port=//p' "$out")"
    [ -n "$PEER_PORT" ] && return 0
    sleep 0.05
  done
  echo "tcp_peer $mode did not start:" >&2; cat "$out" >&2
  return 1
}

# keep_agent PREFIX: copies the last started agent's AGENT_PID, AGENT_LOG,
# AGENT_STATE and AGENT_HEALTH_URL to PREFIX_PID, PREFIX_LOG, ... so several
# agents can run in one script.
keep_agent() {
  printf -v "$1_PID" '%s' "$AGENT_PID"
  printf -v "$1_LOG" '%s' "$AGENT_LOG"
  printf -v "$1_STATE" '%s' "$AGENT_STATE"
  printf -v "$1_URL" '%s' "$AGENT_HEALTH_URL"
}

# wait_through ADDR [TRIES]: until one checked stream of 1 KiB goes through
# ADDR (a forward), TRIES times 0.1 s apart (default 50); false if never.
wait_through() {
  local i
  for ((i = 0; i < ${2:-50}; i++)); do
    tcp_peer check "$1" 1 1K --timeout 5 >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# metric_at_least URL NAME MIN: true when URL/metrics has sample NAME >= MIN
# (false when the sample is missing).
metric_at_least() {
  curl -s "$1/metrics" | awk -v name="$2" -v min="$3" \
    '$1 == name {found = 1; ok = ($2 >= min)} END {exit !(found && ok)}'
}

# wait_for_json URL KEY VALUE [SECONDS]: polls URL/health until KEY has VALUE.
wait_for_json() {
  local url="$1" key="$2" want="$3" limit="${4:-10}" i
  for ((i = 0; i < limit * 20; i++)); do
    health "$url"
    [ "$(json_value "$key")" = "$want" ] && return 0
    sleep 0.05
  done
  return 1
}

# For scripts with connector dc1 (keep_agent DC1, its env in DC1_ENV) and a
# tunneler LAPTOP whose forward is on $FWD:
# restart_dc1_with CERT: connector dc1 comes back presenting CERT (a
# certificate for its own key) instead of the one the controller issued.
restart_dc1_with() {
  stop_agent "$DC1_PID"
  cp "$1" "$DC1_STATE/cert.pem"
  env "${DC1_ENV[@]}" "$ZTR_TEST_BIN/connector" >>"$DC1_LOG" 2>&1 &
  DC1_PID=$!; E2E_PIDS+=("$DC1_PID")
  wait_for_line "$DC1_LOG" 'msg="data listener started"' 10
  sleep 0.3   # past the tunneler's short retry backoff
}

# expect_refused DESCRIPTION TEXT: a request through the forward fails and
# the tunneler logs TEXT (one more time than before).
expect_refused() {
  local before
  before=$(count_lines "$LAPTOP_LOG" "$2")
  run curl -s -m 10 "http://127.0.0.1:$FWD/"
  [ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
  check "$1: the client gets nothing (curl exit $RUN_STATUS)" $?
  [ "$(count_lines "$LAPTOP_LOG" "$2")" -gt "$before" ]
  check "$1: the tunneler logs \"$2\"" $?
}
