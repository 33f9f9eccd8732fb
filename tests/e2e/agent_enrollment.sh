#!/usr/bin/env bash
# The agents (build/bin/connector, build/bin/tunneler) enrolling against the
# real controller: a fresh token brings each ONLINE (/health, node list,
# key 0600, `control-plane stream connected`); a restart without a token
# reuses the identity; the failure-modes texts of §1.1–1.4 with the exit
# statuses systemd acts on; the token never reaches a log.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl || exit 1

# ---- a connector and a tunneler enroll and come ONLINE ------------------------
ctok=$(ctl token create --role connector --name dc1 --address 127.0.0.1)
ttok=$(ctl token create --role tunneler --name laptop)
start_agent connector dc1 ENROLLMENT_TOKEN="$ctok"
check "connector starts" $?
C_PID=$AGENT_PID C_URL=$AGENT_HEALTH_URL C_LOG=$AGENT_LOG C_DIR=$AGENT_STATE
start_agent tunneler laptop ENROLLMENT_TOKEN="$ttok"
check "tunneler starts" $?
L_PID=$AGENT_PID L_URL=$AGENT_HEALTH_URL L_LOG=$AGENT_LOG L_DIR=$AGENT_STATE

for who in "connector dc1 $C_URL" "tunneler laptop $L_URL"; do
  read -r role name url <<<"$who"
  wait_for_state ONLINE 15 "$url"
  check "$role reaches ONLINE" $?
  [ "$HEALTH_CODE" = 200 ]; check "$role /health answers 200 while ONLINE (got $HEALTH_CODE)" $?
  [ "$(json_value connected)" = true ]; check "$role /health connected=true" $?
  [ "$(json_value spiffe_id)" = "spiffe://example.org/$role/$name" ]
  check "$role /health spiffe_id is spiffe://example.org/$role/$name" $?
  [ "$(json_value link)" = connected ]; check "$role /health controller.link=connected" $?
  [ "$(json_value authMode)" = mtls-svid ]; check "$role /health authMode" $?
  [[ "$(json_value node_id)" =~ ^[0-9a-f]{16}$ ]]; check "$role /health carries its node id" $?
done
health "$C_URL"; C_NODE=$(json_value node_id)

run ctl node list
expect_out_has "id=$C_NODE name=dc1 role=connector status=ONLINE" "node list: connector ONLINE under the id /health reports"
expect_out_has "name=laptop role=tunneler status=ONLINE" "node list: tunneler ONLINE"

expect_file_mode "$C_DIR/key.pem" 600 "connector key private"
expect_file_mode "$L_DIR/key.pem" 600 "tunneler key private"
expect_file_mode "$C_DIR" 700 "connector STATE_DIR private"
for f in cert.pem bundle.pem node.json; do
  [ -s "$C_DIR/$f" ]; check "connector STATE_DIR has $f" $?
done
[ "$(count_lines "$C_LOG" 'msg="control-plane stream connected"')" -eq 1 ]
check "connector logs control-plane stream connected once" $?
[ "$(count_lines "$L_LOG" 'msg="control-plane stream connected"')" -eq 1 ]
check "tunneler logs control-plane stream connected once" $?
grep -qF 'msg="enrolled" node='"$C_NODE"' spiffe_id=spiffe://example.org/connector/dc1' "$C_LOG"
check "connector logs its enrollment" $?
grep -qF 'msg="allowlist received"' "$C_LOG"; check "connector receives the allowlist push" $?
grep -qF 'msg="connector list received"' "$L_LOG"; check "tunneler receives the connector list push" $?

run "$PKI" verify --bundle "$C_DIR/bundle.pem" --trust-domain example.org --role connector --ip 127.0.0.1 "$C_DIR/cert.pem"
expect_out "ok spiffe://example.org/connector/dc1" "connector certificate verifies with an IP SAN for its listen address"
run "$PKI" verify --bundle "$L_DIR/bundle.pem" --trust-domain example.org --role tunneler "$L_DIR/cert.pem"
expect_out "ok spiffe://example.org/tunneler/laptop" "tunneler certificate verifies"
cmp -s "$C_DIR/bundle.pem" "$CTL_STATE/ca/ca-1.crt"; check "bundle.pem is the controller's CA" $?

run curl -s "$C_URL/metrics"
expect_out_has 'ztr_agent_state{role="connector",state="ONLINE"} 1' "/metrics: state gauge"
expect_out_has 'ztr_agent_connected{role="connector"} 1' "/metrics: connected gauge"
run curl -s -o /dev/null -w '%{http_code}' "$C_URL/nope"
expect_out 404 "unknown health path → 404"

# ---- a restart needs no token and keeps the identity --------------------------
key_sum=$(sha256sum <"$C_DIR/key.pem")
serial=$("$PKI" inspect "$C_DIR/cert.pem" | sed -n 's/.*serial=//p')
stop_agent "$C_PID"
[ "$AGENT_STATUS" -eq 0 ]; check "SIGTERM: connector exits 0 (got $AGENT_STATUS)" $?
grep -qF 'msg="agent stopped" exit_status=0' "$C_LOG"; check "connector logs a clean stop" $?
start_agent connector dc1
check "connector restarts without ENROLLMENT_TOKEN" $?
C_PID=$AGENT_PID C_URL=$AGENT_HEALTH_URL C_LOG2=$AGENT_LOG
wait_for_state ONLINE 15 "$C_URL"
check "restarted connector ONLINE" $?
[ "$(json_value node_id)" = "$C_NODE" ]; check "same node id after the restart" $?
[ "$(sha256sum <"$C_DIR/key.pem")" = "$key_sum" ]; check "same key after the restart" $?
[ "$("$PKI" inspect "$C_DIR/cert.pem" | sed -n 's/.*serial=//p')" = "$serial" ]
check "same certificate after the restart" $?
grep -qF 'msg="identity loaded" spiffe_id=spiffe://example.org/connector/dc1' "$C_LOG2"
check "restart logs identity loaded" $?
! grep -qF 'msg="enrolled"' "$C_LOG2"; check "restart does not enroll again" $?
[ "$(count_lines "$C_LOG2" 'msg="control-plane stream connected"')" -eq 1 ]
check "restart: one control-plane stream connected" $?
run ctl events
[ "$(grep -c "kind=enrolled node=$C_NODE " <<<"$RUN_OUT")" -eq 1 ]
check "controller events: the connector enrolled exactly once" $?
stop_agent "$C_PID"
[ "$AGENT_STATUS" -eq 0 ]; check "connector exits 0 again" $?

# ---- failure modes §1.1–1.4: message and exit status --------------------------
# 1.1 no token and no identity: configuration error, exit 2.
run_agent tunneler newbie
expect_status 2 "no token, no identity"
expect_err_has "ENROLLMENT_TOKEN is required" "failure-modes 1.1 symptom on stderr"
[ ! -e "$T/agent-newbie/cert.pem" ]; check "1.1: no identity written" $?

# 1.2 a used token: refused by the controller, exit 4.
run_agent tunneler laptop STATE_DIR="$T/reuse" ENROLLMENT_TOKEN="$ttok"
expect_status 4 "used token"
expect_err_has 'msg="invalid enrollment token"' "failure-modes 1.2 symptom (used token)"
[ ! -e "$T/reuse/cert.pem" ] && [ ! -e "$T/reuse/key.pem" ]; check "1.2: nothing left in STATE_DIR" $?
# 1.2 a token for the other role: permission denied, exit 4.
wtok=$(ctl token create --role connector --name wrong --address 127.0.0.1)
run_agent tunneler wrong ENROLLMENT_TOKEN="$wtok"
expect_status 4 "token for the other role"
expect_err_has 'msg="permission denied"' "failure-modes 1.2 symptom (role)"
# ... and a token for another name.
ntok=$(ctl token create --role tunneler --name someone)
run_agent tunneler else ENROLLMENT_TOKEN="$ntok"
expect_status 4 "token for another name"
expect_err_has 'msg="permission denied"' "failure-modes 1.2 symptom (name)"
run ctl events
expect_out_has "kind=denied" "refusals are controller events"

# 1.3 controller CA missing or invalid: exit 2 before any connection.
run_agent tunneler ca1 ENROLLMENT_TOKEN="$ntok" CONTROLLER_CA="$T/nope.crt"
expect_status 2 "CONTROLLER_CA file missing"
expect_err_has "failed to read controller CA: open $T/nope.crt: no such file or directory" "failure-modes 1.3 symptom (missing)"
printf 'not a certificate\n' >"$T/garbage.crt"
run_agent tunneler ca2 ENROLLMENT_TOKEN="$ntok" CONTROLLER_CA="$T/garbage.crt"
expect_status 2 "CONTROLLER_CA garbage"
expect_err_has "invalid internal CA" "failure-modes 1.3 symptom (invalid)"
run_agent tunneler ca3 ENROLLMENT_TOKEN="$ntok" CONTROLLER_CA=
expect_status 2 "CONTROLLER_CA unset for a first enrollment"
expect_err_has "failed to read controller CA" "says which file is missing"

# 1.4 a trust domain with a trailing dot.
run_agent tunneler td ENROLLMENT_TOKEN="$ntok" TRUST_DOMAIN=example.org.
expect_status 2 "TRUST_DOMAIN=example.org."
expect_err_has 'cannot parse URI \"spiffe://example.org.\": invalid domain' "failure-modes 1.4 symptom (quotes escaped in the log value)"
grep -qE 'cannot parse URI .*invalid domain' <<<"$RUN_ERR"; check "1.4 symptom shape" $?
# None of the refused configurations used the token.
run ctl token list
expect_out_has "name=someone prefix=false uses_left=1" "configuration errors never reach the controller"

# ---- the token is never logged -----------------------------------------------
logs=("$T"/agent-*.log)
[ "${#logs[@]}" -ge 10 ]; check "agent logs collected (${#logs[@]})" $?
for tok in "$ctok" "$ttok" "$wtok" "$ntok"; do
  ! grep -qF -- "$tok" "${logs[@]}"; check "token ${tok%%.*} never in an agent log" $?
  ! grep -qF -- "${tok#*.}" "${logs[@]}"; check "token ${tok%%.*} secret part never in an agent log" $?
done
! grep -qE '[0-9a-f]{16}\.[0-9a-f]{64}' "${logs[@]}"; check "nothing token-shaped in any agent log" $?
stop_agent "$L_PID"
[ "$AGENT_STATUS" -eq 0 ]; check "tunneler exits 0" $?
stop_controller
finish
