#!/usr/bin/env bash
# Renewal under disk faults, with 14 s certificates (renewal due at about
# half). While a transfer runs through a connector and a tunneler:
#   - the connector's disk is full (ENOSPC) at the renewal's writes, the
#     tunneler's fails them (EIO): each logs `renewal failed`, keeps serving
#     with its old pair (cert.pem untouched, key.pem its key), retries with
#     backoff, and renews once the fault is gone; the transfer completes on
#     the same data session;
#   - an agent whose renewals failed twice is killed and restarted: the
#     controller still admits the certificate it holds (the renewals it never
#     kept are not what it has; it names its serial in each renew). It used
#     to be refused (`certificate superseded`).
# Then a crash (kill -9) at each rename and fsync of a renewal: restarted,
# the agent has one whole pair (the old one or the new), connects, and
# renews. Short form: every rename (each write's commit); ZTR_FAULTS_SLOW=1:
# every fsync too.
. "$(dirname "$0")/fault_lib.sh"
FAULT_RUNS=0
T="$E2E_TMP"
TTL=14
start_controller ctl SVID_TTL=${TTL}s || exit 1
pubkey() {
  if grep -q CERTIFICATE "$1"; then openssl x509 -noout -pubkey -in "$1"; else openssl pkey -pubout -in "$1"; fi 2>/dev/null
}
pair_ok() { [ -n "$(pubkey "$1/cert.pem")" ] && [ "$(pubkey "$1/key.pem")" = "$(pubkey "$1/cert.pem")" ]; }

BYTES=$((2000000 * 22))
start_peer source "$BYTES" || exit 1; SRC_PORT=$PEER_PORT
ctl resource add src --connector dc1 >/dev/null
FULL="$T/connector-disk-full"; BROKEN="$T/tunneler-disk-broken"
fault_env open enospc "pem.new" 1 0 "$FULL"; DC1_FAULT=("${FAULT_ENV[@]}")
start_agent connector dc1 "${DC1_FAULT[@]}" \
  ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="src=127.0.0.1:$SRC_PORT"
keep_agent DC1
DC1_STATE=$AGENT_STATE
ctl allow --tunneler laptop --resource src >/dev/null
FWD=$(free_port)
fault_env fsync eio "pem.new" 1 0 "$BROKEN"; LAPTOP_FAULT=("${FAULT_ENV[@]}")
start_agent tunneler laptop "${LAPTOP_FAULT[@]}" \
  ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=src" SOCKS5_LISTEN=off
keep_agent LAPTOP
LAPTOP_STATE=$AGENT_STATE
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
touch "$FULL" "$BROKEN"
dc1_cert=$(sha256sum <"$DC1_STATE/cert.pem"); laptop_cert=$(sha256sum <"$LAPTOP_STATE/cert.pem")

tcp_peer read "127.0.0.1:$FWD" "$BYTES" 2000000 >"$T/read.out" 2>&1 &
READER=$!

# ---- ENOSPC (connector) and EIO (tunneler) at every renewal write ----------------------
wait_for_re "$DC1_LOG" 'msg="renewal failed".*no space left on device' $((TTL * 6 / 10 + 5))
check "connector: renewal failed, no space left on device" $?
wait_for_re "$LAPTOP_LOG" 'msg="renewal failed".*input/output error' $((TTL * 6 / 10 + 5))
check "tunneler: renewal failed, input/output error" $?
for who in "DC1 $DC1_STATE $DC1_URL" "LAPTOP $LAPTOP_STATE $LAPTOP_URL"; do
  read -r name dir url <<<"$who"
  log_var="${name}_LOG"
  wait_for_line "${!log_var}" 'msg="renewal failed"' 5
  [ "$(count_lines "${!log_var}" 'msg="renewal failed"')" -ge 2 ]
  check "$name retries the renewal ($(count_lines "${!log_var}" 'msg="renewal failed"') failures so far)" $?
  grep -q 'retry_in_ms=' "${!log_var}"; check "$name says when it retries (backoff)" $?
  health "$url"; [ "$(json_value state)" = ONLINE ] || [ "$(json_value state)" = RENEWING ]
  check "$name keeps serving ($(json_value state))" $?
  pair_ok "$dir"; check "$name: key.pem is still the key of cert.pem" $?
  left=$(cd "$dir" && ls -A | grep -E '\.new$|\.tmp\.' | tr '\n' ' ')
  [ -z "$left" ]; check "$name: nothing staged left after the failures (${left:-none})" $?
done
[ "$(sha256sum <"$DC1_STATE/cert.pem")" = "$dc1_cert" ]; check "connector: cert.pem is the old one" $?
[ "$(sha256sum <"$LAPTOP_STATE/cert.pem")" = "$laptop_cert" ]; check "tunneler: cert.pem is the old one" $?
kill -0 "$READER" 2>/dev/null; check "the transfer is still running" $?

rm -f "$FULL" "$BROKEN"
wait_for_line "$DC1_LOG" 'msg="certificate renewed"' 70; check "connector renews once the disk frees" $?
wait_for_line "$LAPTOP_LOG" 'msg="certificate renewed"' 70; check "tunneler renews once the disk works" $?
pair_ok "$DC1_STATE" && [ "$(sha256sum <"$DC1_STATE/cert.pem")" != "$dc1_cert" ]
check "connector: a new whole pair on disk" $?
pair_ok "$LAPTOP_STATE" && [ "$(sha256sum <"$LAPTOP_STATE/cert.pem")" != "$laptop_cert" ]
check "tunneler: a new whole pair on disk" $?
wait "$READER"; status=$?
[ "$status" -eq 0 ] && grep -q "^ok bytes=$BYTES" "$T/read.out"
check "every byte of the transfer arrived ($(cat "$T/read.out"))" $?
[ "$(count_lines "$LAPTOP_LOG" 'msg="data session opened"')" -eq 1 ]
check "on the same data session" $?

# ---- renewals failed twice, then a crash: the old certificate is still admitted ---------
touch "$BROKEN"
before=$(count_lines "$LAPTOP_LOG" 'msg="renewal failed"')
for ((i = 0; i < 400; i++)); do
  [ "$(count_lines "$LAPTOP_LOG" 'msg="renewal failed"')" -ge $((before + 2)) ] && break
  sleep 0.1
done
[ "$(count_lines "$LAPTOP_LOG" 'msg="renewal failed"')" -ge $((before + 2)) ]
check "tunneler: two more renewals failed" $?
kill -KILL "$LAPTOP_PID"; wait "$LAPTOP_PID" 2>/dev/null
rm -f "$BROKEN"
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=src" SOCKS5_LISTEN=off
LAPTOP_PID=$AGENT_PID
grep -q 'msg="identity loaded"' "$AGENT_LOG"; check "restarted with the certificate it kept" $?
wait_for_state ONLINE 15; check "the controller admits it: ONLINE" $?
! grep -q 'certificate superseded' "$AGENT_LOG"; check "not refused as superseded" $?
wait_for_line "$AGENT_LOG" 'msg="certificate renewed"' 20; check "and it renews" $?
stop_agent "$LAPTOP_PID"

# ---- a crash at each durable write of a renewal ------------------------------------------
# A certificate loaded from disk is due at once (its notBefore is backdated),
# so each start renews.
count_renewal_writes() { # OP: sets WRITES
  fault_trace_env "$1" "agent-laptop"
  start_agent tunneler laptop "${FAULT_ENV[@]}" FORWARDS="127.0.0.1:$FWD=src" SOCKS5_LISTEN=off
  wait_for_line "$AGENT_LOG" 'msg="certificate renewed"' 20
  stop_agent
  WRITES=$(fault_count)
}
crash_renewal_at() { # OP N
  fault_env "$1" crash "agent-laptop" "$2" 1
  start_agent tunneler laptop "${FAULT_ENV[@]}" FORWARDS="127.0.0.1:$FWD=src" SOCKS5_LISTEN=off
  [ "$AGENT_STATUS" = 255 ] && wait_agent_exit 20
  [ "$AGENT_STATUS" = 137 ]; check "renewal $1 $2: killed there (status $AGENT_STATUS)" $?
  start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=src" SOCKS5_LISTEN=off
  check "renewal $1 $2: starts again" $?
  wait_for_state ONLINE 15; check "renewal $1 $2: ONLINE (its certificate admitted)" $?
  wait_for_line "$AGENT_LOG" 'msg="certificate renewed"' 20; check "renewal $1 $2: renews" $?
  stop_agent
  pair_ok "$LAPTOP_STATE"; check "renewal $1 $2: key.pem is the key of cert.pem" $?
  left=$(cd "$LAPTOP_STATE" && ls -A | grep -E '\.new$|\.tmp\.' | tr '\n' ' ')
  [ -z "$left" ]; check "renewal $1 $2: nothing staged left (${left:-none})" $?
}
count_renewal_writes rename; RENAMES=$WRITES
[ "$RENAMES" -ge 4 ]; check "a renewal renames $RENAMES times in STATE_DIR" $?
for ((n = 1; n <= RENAMES; n++)); do crash_renewal_at rename "$n"; done
if [ "${ZTR_FAULTS_SLOW:-0}" = 1 ]; then
  count_renewal_writes fsync; FSYNCS=$WRITES
  [ "$FSYNCS" -ge 4 ]; check "a renewal fsyncs $FSYNCS times in STATE_DIR" $?
  for ((n = 1; n <= FSYNCS; n++)); do crash_renewal_at fsync "$n"; done
fi
stop_agent "$DC1_PID"
finish
