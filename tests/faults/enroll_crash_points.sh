#!/usr/bin/env bash
# A crash (kill -9) at every durable write of an enrollment. The writes of
# one enrollment are counted first (renames and fsyncs in STATE_DIR); then,
# for each N, a fresh connector is killed at its Nth one and started again
# with the same token. Whatever N, it must end ONLINE as one node, with
# key.pem the key of cert.pem and nothing staged left behind (key.pem.new,
# cert.pem.new, enroll-key.pem, temporaries). Before the enrollment key was
# kept ahead of the controller's answer, a crash after the answer left a
# used-up token and a new key at restart: `invalid enrollment token`.
# Short form: every rename and every other fsync; ZTR_FAULTS_SLOW=1: every
# fsync too, and crashes just after each write as well as at it.
. "$(dirname "$0")/fault_lib.sh"
FAULT_RUNS=0
T="$E2E_TMP"
start_controller ctl || exit 1

# pubkey FILE: the public key of a key or certificate file, as text.
pubkey() {
  if grep -q CERTIFICATE "$1"; then openssl x509 -noout -pubkey -in "$1"; else openssl pkey -pubout -in "$1"; fi 2>/dev/null
}

# ---- how many durable writes an enrollment makes -------------------------------------
count_writes() { # OP: sets WRITES
  local name="count-$1" tok
  tok=$(ctl token create --role connector --name "$name" --address 127.0.0.1)
  fault_trace_env "$1" "agent-$name"
  start_agent connector "$name" "${FAULT_ENV[@]}" ENROLLMENT_TOKEN="$tok" || return 1
  wait_for_state ONLINE 20 || return 1
  wait_for_line "$AGENT_LOG" 'msg="allowlist received"' 10
  stop_agent
  WRITES=$(fault_count)
}
count_writes rename; RENAMES=$WRITES
check "an enrollment renames in STATE_DIR ($RENAMES times)" $([ "${RENAMES:-0}" -ge 4 ]; echo $?)
count_writes fsync; FSYNCS=$WRITES
check "an enrollment fsyncs in STATE_DIR ($FSYNCS times)" $([ "${FSYNCS:-0}" -ge 4 ]; echo $?)

# crash_at OP N ACTION: a fresh connector killed at its Nth OP, then started
# again with the same token.
crash_at() {
  local op="$1" n="$2" action="$3" name="c-$1-$2-$3" tok dir
  tok=$(ctl token create --role connector --name "$name" --address 127.0.0.1)
  dir="$T/agent-$name"
  fault_env "$op" "$action" "agent-$name" "$n" 1
  start_agent connector "$name" "${FAULT_ENV[@]}" ENROLLMENT_TOKEN="$tok"
  [ "$AGENT_STATUS" = 255 ] && wait_agent_exit 20
  [ "$AGENT_STATUS" = 137 ]
  check "$name: killed at $op $n (status $AGENT_STATUS)" $?
  start_agent connector "$name" ENROLLMENT_TOKEN="$tok"
  check "$name: starts again with the same token" $?
  wait_for_state ONLINE 20
  check "$name: ONLINE" $?
  stop_agent
  run ctl node list
  [ "$(grep -c "name=$name role=connector" <<<"$RUN_OUT")" = 1 ]
  check "$name: one node row" $?
  [ -n "$(pubkey "$dir/cert.pem")" ] && [ "$(pubkey "$dir/key.pem")" = "$(pubkey "$dir/cert.pem")" ]
  check "$name: key.pem is the key of cert.pem" $?
  local left
  left=$(cd "$dir" && ls -A | grep -E '\.new$|^enroll-key\.pem$|\.tmp\.' | tr '\n' ' ')
  [ -z "$left" ]; check "$name: nothing staged left (${left:-none})" $?
}

for ((n = 1; n <= RENAMES; n++)); do crash_at rename "$n" crash; done
step=2; [ "${ZTR_FAULTS_SLOW:-0}" = 1 ] && step=1
for ((n = 1; n <= FSYNCS; n += step)); do crash_at fsync "$n" crash; done
if [ "${ZTR_FAULTS_SLOW:-0}" = 1 ]; then
  for ((n = 1; n <= RENAMES; n++)); do crash_at rename "$n" crash-after; done
fi
finish
