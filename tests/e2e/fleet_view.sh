#!/usr/bin/env bash
# The fleet view (docs/OPERATIONS.md, "The fleet view"): the controller keeps
# each node's heartbeat counters and certificate horizon; `controller fleet`
# and GET /api/admin/fleet list nodes with a missed renewal, expiring within
# N, expired or flapping (3 reconnects in 5 minutes) with 5-minute deltas of
# the runbook's counters; /metrics counts nodes per state and exports
# ztr_node_cert_expiry_seconds; 3 nodes failing the same way within 5
# minutes give one warn line (seed 000: "Escalate to platform/backend
# on-call if: 3+ nodes show the same auth failure pattern."). Certificates
# live 10 s here, heartbeats every 300 ms.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
start_controller ctl SVID_TTL=10s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org)
api() { curl -s -m 5 -H "Authorization: Bearer $ADMIN_AUTH_TOKEN" "$ADMIN_URL/api/admin/$1"; }
metrics() { curl -s -m 5 "$HEALTH_URL/metrics"; }
# node_json NAME: NAME's fields in $RUN_OUT (an /api/admin/fleet answer),
# from its "name" to the next node's.
node_json() { sed -n "s/.*\"name\":\"$1\"//p" <<<"$RUN_OUT" | sed 's/"name":.*//'; }
enroll() { # enroll ROLE NAME
  mkdir -p "$T/$2"
  probe enroll "${P[@]}" --ca "$CA" --token "$(ctl token create --role "$1" --name "$2")" \
    --role "$1" --name "$2" --out "$T/$2" >/dev/null
}
# fleet_line NAME [ctl fleet options]: the node's line of `controller fleet`.
fleet_line() {
  local name="$1"; shift
  ctl fleet "$@" | grep " name=$name role="
}
# wait_fleet NAME TEXT [options]: polls until NAME's line has TEXT (15 s).
wait_fleet() {
  local name="$1" text="$2"; shift 2
  for _ in $(seq 150); do
    fleet_line "$name" "$@" | grep -qF -- "$text" && return 0
    sleep 0.1
  done
  return 1
}

# A real tunneler: its own heartbeats carry its counters, and it renews at
# about half of the 10 s lifetime.
start_agent tunneler real ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name real)"
check "a real tunneler starts" $?
wait_for_state ONLINE 20
check "the real tunneler is ONLINE" $?

for n in t1 t2 t3 f1; do enroll tunneler "$n"; check "probe $n enrolled" $?; done

# Three nodes whose telemetry.auth.unavailable rises with every heartbeat.
pids=()
for n in t1 t2 t3; do
  probe session "${P[@]}" --dir "$T/$n" --role tunneler --interval 100 --duration 4000 \
    --counters '{"auth_unavailable":4,"reconnect_failed":1}' --rise auth_unavailable \
    >"$T/$n.out" 2>&1 &
  pids+=($!)
done
wait_for_line "$CTL_LOG" 'failure=telemetry.auth.unavailable' 15
check "3 nodes with the same auth failure: the escalation line" $?
RUN_OUT="$(grep -F 'msg="escalate to platform/backend on-call' "$CTL_LOG")"
expect_out_has 'level=warn msg="escalate to platform/backend on-call: 3+ nodes show the same auth failure pattern" failure=telemetry.auth.unavailable nodes=3 window_s=300' \
  "the line is a warning in seed 000's words, naming the failure"
for n in t1 t2 t3; do expect_out_has "tunneler/$n" "the line names $n"; done

# While they keep failing: the same line is not repeated (one per 5 minutes).
run ctl fleet
expect_status 0 "controller fleet"
expect_out_has "escalate failure=telemetry.auth.unavailable nodes=3 names=" "the CLI shows the escalation"
line="$(grep ' name=t1 role=' <<<"$RUN_OUT")"
grep -q 'state=ONLINE' <<<"$line"; check "t1 ONLINE while its session lasts ($line)" $?
grep -Eq 'auth\.unavailable_5m=[1-9]' <<<"$line"; check "t1's 5-minute delta of auth.unavailable rises" $?
grep -q 'reconnect.failed_5m=0' <<<"$line"; check "a counter that did not move has a delta of 0" $?
for p in "${pids[@]}"; do wait "$p"; done
[ "$(grep -c 'failure=telemetry.auth.unavailable' "$CTL_LOG")" -eq 1 ]
check "one escalation line, however many heartbeats failed" $?

# The admin API carries the counters under the runbook's names.
run api fleet
expect_out_has '"window_s":300' "the API says the deltas' window"
expect_out_has '"escalate_at_nodes":3' "and the escalation threshold"
expect_out_has '"telemetry.auth.unavailable":' "counters by the runbook's names"
expect_out_has '"failure":"telemetry.auth.unavailable","nodes":3' "escalations in the API"

# The real agent's counters reached the controller.
run api fleet
node_json real | grep -q '"state":"ONLINE"'
check "the real tunneler is ONLINE in the fleet view" $?
wait_fleet real "reconnect.scheduled_5m=0"
check "the real tunneler's heartbeats carry its counters" $?

# Flapping: 4 sessions in a row are 3 reconnects.
for _ in 1 2 3 4; do
  probe session "${P[@]}" --dir "$T/f1" --role tunneler --until welcome >/dev/null 2>&1
done
run ctl fleet --flapping
expect_status 0 "fleet --flapping"
expect_out_has " name=f1 role=tunneler" "the flapping node is listed"
grep ' name=f1 ' <<<"$RUN_OUT" | grep -q 'flags=[^ ]*flapping'
check "flagged flapping" $?
grep -q ' reconnects_5m=3' <<<"$(grep ' name=f1 ' <<<"$RUN_OUT")"
check "with its 3 reconnects" $?
grep -q ' name=t1 ' <<<"$RUN_OUT"; [ $? -ne 0 ]; check "a node that did not flap is not listed" $?
run metrics
expect_out_has 'ztr_nodes_flapping 1' "/metrics counts flapping nodes"

# Expiring within N: the new certificates have 10 s or less left.
enroll tunneler fresh
run ctl fleet --expiring-within 1m
expect_out_has " name=fresh role=tunneler" "--expiring-within 1m lists a node with 10 s left"
grep ' name=fresh ' <<<"$RUN_OUT" | grep -q 'flags=expiring'
check "flagged expiring" $?
run ctl fleet --expiring-within 1s
grep -q ' name=fresh ' <<<"$RUN_OUT"; [ $? -ne 0 ]; check "--expiring-within 1s does not" $?
run ctl fleet --expiring-within soon
expect_status 1 "a bad duration is refused"
expect_err_has 'expiring_within' "naming the parameter"

# /metrics: one expiry series per node (bounded) and nodes per state.
run metrics
expect_out_has 'ztr_node_cert_expiry_seconds{node="t1",role="tunneler"} ' "ztr_node_cert_expiry_seconds per node"
expect_out_has 'ztr_node_cert_expiry_omitted 0' "nothing left out below the bound"
expect_out_has 'ztr_nodes{state="ONLINE"} ' "ztr_nodes by state"
expect_out_has 'ztr_nodes{state="EXPIRED"} ' "EXPIRED is a state"
grep -Eq '^ztr_controller_fleet_escalations_total [1-9]' <<<"$RUN_OUT"
check "escalation lines are counted" $?

# The probes never renew: past 60 % of the lifetime their renewal is missed;
# the real tunneler renews and is not.
# (Polled per node: on a loaded machine their enrollments were seconds apart.)
for n in t1 t2 t3; do
  wait_fleet "$n" "flags=renewal_missed" --missed-renewal
  check "$n missed its renewal" $?
done
run ctl fleet --missed-renewal
grep -q ' name=real ' <<<"$RUN_OUT"; [ $? -ne 0 ]; check "the renewing tunneler is not listed" $?
wait_for_line "$CTL_LOG" 'failure=renewal_missed' 10
check "3 missed renewals: an escalation line" $?
wait_fleet real "last_renewal=20"
check "the real tunneler's last renewal is shown" $?

# Expired: the state, the filter, the line.
for n in t1 t2 t3; do
  wait_fleet "$n" "state=EXPIRED flags=expired" --expired
  check "$n is EXPIRED" $?
done
run ctl fleet --expired
grep ' name=t1 ' <<<"$RUN_OUT" | grep -Eq 'expires_in_s=(0|-)'
check "no time left" $?
wait_for_line "$CTL_LOG" 'failure=certificate_expired' 10
check "3 expiries: an escalation line" $?
# f1 was enrolled after t3: its certificate may run out a moment later.
for _ in $(seq 1 50); do
  run metrics
  grep -Eq '^ztr_nodes\{state="EXPIRED"\} [4-9]' <<<"$RUN_OUT" && break
  sleep 0.2
done
grep -Eq '^ztr_nodes\{state="EXPIRED"\} [4-9]' <<<"$RUN_OUT"
check "/metrics counts the expired nodes" $?
grep -Eq '^ztr_node_cert_expiry_seconds\{node="t1",role="tunneler"\} (0|-)' <<<"$RUN_OUT"
check "an expired node's series goes negative rather than away" $?
run ctl fleet --state ONLINE
expect_out_has " name=real role=tunneler state=ONLINE" "--state ONLINE"
grep -q ' name=t1 ' <<<"$RUN_OUT"; [ $? -ne 0 ]; check "--state keeps other states out" $?
run ctl events --limit 1000
expect_out_has 'kind=alert' "escalations are events too"

# Counters survive a restart (written at stop); deltas start over.
stop_agent
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller stops cleanly" $?
start_controller ctl SVID_TTL=10s || exit 1
run api fleet
node_json t1 | grep -Eq '"telemetry.auth.unavailable":[1-9]'
check "t1's counters are still there after a restart" $?
node_json t1 | grep -q '"deltas_5m":null'
check "no deltas for a node not heard from since the restart" $?
stop_controller
finish
