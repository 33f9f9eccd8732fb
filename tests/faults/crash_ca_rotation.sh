#!/usr/bin/env bash
# A crash (kill -9) of the controller at each durable write of a CA
# rotation (controller/ca.c: the new CA's key, its certificate, state.json
# that commits them; each fsync and rename under STATE_DIR/ca), and just
# after each rename. Started again, the controller must start (no
# half-made CA blocks it), show one CA set (the old or the rotated one),
# issue certificates (a new node enrolls), and admit the agents it had
# (a connector enrolled before reconnects). Each crash starts from the same
# controller state (one CA, the connector enrolled). Short form: every
# rename and every other fsync; ZTR_FAULTS_SLOW=1: every fsync too.
. "$(dirname "$0")/fault_lib.sh"
FAULT_RUNS=0
T="$E2E_TMP"
CPORT=$(free_port)
ctl_start() { start_controller ctl CONTROLLER_LISTEN="127.0.0.1:$CPORT" "$@"; }
ctl_start || exit 1
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
keep_agent DC1
wait_for_state ONLINE 20; check "dc1 ONLINE before any rotation" $?
stop_controller
cp -a "$CTL_STATE" "$T/ctl-snapshot"
ARM="$T/armed"
ENROLLED=0

# bundle: every CA certificate the controller has, for the probe's --ca.
bundle() { cat "$CTL_STATE"/ca/ca-*.crt >"$T/bundle.pem" 2>/dev/null; }

# rotate_with ENV...: a controller from the snapshot, with ENV, asked to rotate.
rotate_with() {
  rm -rf "$CTL_STATE"; cp -a "$T/ctl-snapshot" "$CTL_STATE"
  rm -f "$ARM"
  ctl_start "$@" || return 1
  touch "$ARM"
  ctl ca rotate >/dev/null 2>&1
  ROTATE_STATUS=$?
}

# ---- how many durable writes a rotation makes ----------------------------------------
count_rotation() { # OP: sets WRITES
  fault_trace_env "$1" "ctl/ca"
  rotate_with "${FAULT_ENV[@]}" ZTR_FAULT_WHILE="$ARM"
  rm -f "$ARM"
  stop_controller
  WRITES=$(fault_count)
}
count_rotation rename; RENAMES=$WRITES
[ "$RENAMES" -ge 2 ]; check "a rotation renames $RENAMES times under ca/" $?
count_rotation fsync; FSYNCS=$WRITES
[ "$FSYNCS" -ge 3 ]; check "a rotation fsyncs $FSYNCS times under ca/" $?

crash_at() { # OP N ACTION
  local what="$1 $2 $3" connected
  fault_env "$1" "$3" "ctl/ca" "$2" 1 "$ARM"
  connected=$(count_lines "$DC1_LOG" 'msg="control-plane stream connected"')
  rotate_with "${FAULT_ENV[@]}"
  local i
  for ((i = 0; i < 200; i++)); do kill -0 "$CTL_PID" 2>/dev/null || break; sleep 0.05; done
  wait "$CTL_PID" 2>/dev/null; status=$?
  rm -f "$ARM"
  [ "$status" = 137 ]; check "$what: the controller was killed there (status $status)" $?
  ctl_start; check "$what: it starts again" $?
  run ctl ca show
  expect_status 0 "$what: ca show"
  grep -qE 'version=(1|2)( |$)' <<<"$RUN_OUT"; check "$what: the old CA set or the rotated one" $?
  bundle
  ENROLLED=$((ENROLLED + 1))
  mkdir -p "$T/new-$ENROLLED"
  run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$T/bundle.pem" \
    --token "$(ctl token create --role tunneler --name "new-$ENROLLED")" --role tunneler \
    --name "new-$ENROLLED" --out "$T/new-$ENROLLED"
  expect_status 0 "$what: it issues (a new node enrolls)"
  # The restart closed dc1's stream: it must open a new one.
  for ((i = 0; i < 300; i++)); do
    [ "$(count_lines "$DC1_LOG" 'msg="control-plane stream connected"')" -gt "$connected" ] && break
    sleep 0.05
  done
  [ "$(count_lines "$DC1_LOG" 'msg="control-plane stream connected"')" -gt "$connected" ]
  check "$what: dc1 connects again" $?
  wait_for_state ONLINE 10 "$DC1_URL"; check "$what: dc1 ONLINE" $?
  stop_controller
  [ "$STOP_STATUS" = 0 ]; check "$what: it stops cleanly" $?
}
for ((n = 1; n <= RENAMES; n++)); do crash_at rename "$n" crash; crash_at rename "$n" crash-after; done
step=2; [ "${ZTR_FAULTS_SLOW:-0}" = 1 ] && step=1
for ((n = 1; n <= FSYNCS; n += step)); do crash_at fsync "$n" crash; done
stop_agent "$DC1_PID"
finish
