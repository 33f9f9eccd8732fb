#!/usr/bin/env bash
# Failure mode 2.1: a peer whose certificate comes from a CA the other side
# does not trust. Control plane: an agent whose CONTROLLER_CA is a foreign CA
# never connects (`x509: certificate signed by unknown authority`, /health
# 503, no node). Data plane: a connector presenting a certificate from a
# foreign CA is refused by the tunneler with the same text; the client gets
# nothing. Then the right CA / certificate works again.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 2.1 "Unknown Authority" "x509: certificate signed by unknown authority"
PKI="$ZTR_TEST_BIN/ztr-pki"
dp_setup || exit 1
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "baseline: a request goes through"
"$PKI" ca init --trust-domain example.org --out "$E2E_TMP/foreign" >/dev/null

# ---- control plane: the agent does not trust the controller --------------------
tok=$(ctl token create --role tunneler --name phone)
start_agent tunneler phone ENROLLMENT_TOKEN="$tok" CONTROLLER_CA="$E2E_TMP/foreign/ca.crt"
check "agent with a foreign CONTROLLER_CA starts" $?
keep_agent PHONE
wait_for_line "$PHONE_LOG" "x509: certificate signed by unknown authority" 5
fm_seen "$PHONE_LOG"
grep -qF 'msg="control-plane connection failed" controller='"$CTL_ADDR"' reason="x509: certificate signed by unknown authority"' "$PHONE_LOG"
check "control plane: the connection fails with the reason" $?
sleep 0.5
health "$PHONE_URL"
[ "$HEALTH_CODE" = 503 ] && [ "$(json_value connected)" = false ]
ok=$?; check "control plane: /health 503, not connected (state $(json_value state))" $ok
! grep -qF 'msg="control-plane stream connected"' "$PHONE_LOG"; check "control plane: never connected" $?
run ctl node list
! grep -qF "name=phone" <<<"$RUN_OUT"; check "control plane: no node phone in the admin API" $?
run ctl token list
expect_out_has "name=phone prefix=false uses_left=1" "control plane: the token was not used"
grep -qF 'msg="TLS handshake failed"' "$CTL_LOG"; check "the controller logs the failed handshake" $?
stop_agent "$PHONE_PID"
# With the controller's CA the same agent enrolls.
start_agent tunneler phone ENROLLMENT_TOKEN="$tok"
wait_for_state ONLINE 10; check "control plane: with the right CONTROLLER_CA the agent is ONLINE" $?
stop_agent

# ---- data plane: the tunneler does not trust the connector ------------------------
CAD=$(ctl_ca_dir)
"$PKI" csr --key "$DC1_STATE/key.pem" >"$E2E_TMP/dc1.csr"
"$PKI" issue --ca-dir "$E2E_TMP/foreign" --role connector --name dc1 --ip 127.0.0.1 \
  --csr "$E2E_TMP/dc1.csr" --out "$E2E_TMP/foreign.pem" >/dev/null
restart_dc1_with "$E2E_TMP/foreign.pem"
expect_refused "data plane, connector from a foreign CA" "x509: certificate signed by unknown authority"
grep -qF 'reason="x509: certificate signed by unknown authority"' "$LAPTOP_LOG"
check "data plane: the tunneler's log line carries the text as the reason" $?
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --ip 127.0.0.1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/good.pem" >/dev/null
restart_dc1_with "$E2E_TMP/good.pem"
ok=1
for _ in 1 2 3 4 5 6 7 8 9 10; do
  run curl -s -m 10 "http://127.0.0.1:$FWD/"
  [ "$RUN_OUT" = "hello from resource" ] && { ok=0; break; }
  sleep 0.2
done
check "data plane: with a certificate from the controller's CA the request goes through" $ok
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller
fm_trim
fm_finish
