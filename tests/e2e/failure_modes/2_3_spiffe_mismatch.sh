#!/usr/bin/env bash
# Failure mode 2.3: a certificate from a trusted CA with the wrong SPIFFE
# identity — another trust domain or the wrong role. Every mTLS handshake
# checks both: the tunneler refuses such a connector, the connector refuses
# such a tunneler, an agent refuses a controller of another trust domain.
# The connection is rejected and the client gets nothing.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 2.3 "SPIFFE ID Mismatch" "SPIFFE trust domain mismatch or unexpected SPIFFE role"
PKI="$ZTR_TEST_BIN/ztr-pki"
dp_setup || exit 1
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "baseline: a request goes through"
CAD=$(ctl_ca_dir)
"$PKI" csr --key "$DC1_STATE/key.pem" >"$E2E_TMP/dc1.csr"
"$PKI" csr --key "$LAPTOP_STATE/key.pem" >"$E2E_TMP/laptop.csr"

# ---- the connector presents a tunneler's identity: unexpected SPIFFE role -------
"$PKI" issue --ca-dir "$CAD" --role tunneler --name dc1 --ip 127.0.0.1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/role.pem" >/dev/null
restart_dc1_with "$E2E_TMP/role.pem"
expect_refused "connector with role tunneler" "unexpected SPIFFE role"
fm_seen_also "$LAPTOP_LOG" "unexpected SPIFFE role"

# ---- the connector presents another trust domain (whose CA the tunneler has) ----
"$PKI" ca init --trust-domain other.org --out "$E2E_TMP/other" >/dev/null
"$PKI" issue --ca-dir "$E2E_TMP/other" --role connector --name dc1 --ip 127.0.0.1 \
  --csr "$E2E_TMP/dc1.csr" --out "$E2E_TMP/other.pem" >/dev/null
stop_agent "$LAPTOP_PID"
cat "$E2E_TMP/other/ca.crt" >>"$LAPTOP_STATE/bundle.pem"
# Off the controller, so the bundle it would push does not replace this one.
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=web" SOCKS5_LISTEN=off \
  CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms CONTROLLER_ADDR=127.0.0.1:1
keep_agent LAPTOP
restart_dc1_with "$E2E_TMP/other.pem"
expect_refused "connector of trust domain other.org" "SPIFFE trust domain mismatch"
fm_seen_also "$LAPTOP_LOG" "SPIFFE trust domain mismatch"

# ---- the tunneler presents a connector's identity to the connector -------------
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --ip 127.0.0.1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/good.pem" >/dev/null
restart_dc1_with "$E2E_TMP/good.pem"
stop_agent "$LAPTOP_PID"
"$PKI" issue --ca-dir "$CAD" --role connector --name laptop --csr "$E2E_TMP/laptop.csr" \
  --out "$LAPTOP_STATE/cert.pem" >/dev/null
cp "$CAD/ca.crt" "$LAPTOP_STATE/bundle.pem"
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=web" SOCKS5_LISTEN=off \
  CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms CONTROLLER_ADDR=127.0.0.1:1
keep_agent LAPTOP
before=$(count_lines "$DC1_LOG" "unexpected SPIFFE role")
run curl -s -m 10 "http://127.0.0.1:$FWD/"
[ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]; check "tunneler with role connector: the client gets nothing" $?
wait_for_line "$DC1_LOG" "unexpected SPIFFE role" 5
[ "$(count_lines "$DC1_LOG" "unexpected SPIFFE role")" -gt "$before" ]
check "the connector rejects the tunneler: unexpected SPIFFE role" $?

# ---- control plane: an agent of another trust domain ------------------------------
tok=$(ctl token create --role tunneler --name phone)
start_agent tunneler phone ENROLLMENT_TOKEN="$tok" TRUST_DOMAIN=other.org
keep_agent PHONE
wait_for_line "$PHONE_LOG" "SPIFFE trust domain mismatch" 5
grep -qF 'reason="SPIFFE trust domain mismatch: peer spiffe://example.org/controller, expected trust domain other.org"' "$PHONE_LOG"
check "control plane: the agent refuses the controller of example.org" $?
health "$PHONE_URL"
[ "$HEALTH_CODE" = 503 ]; check "control plane: /health 503 (not connected)" $?
run ctl node list
! grep -qF "name=phone" <<<"$RUN_OUT"; check "control plane: no node phone" $?
stop_agent "$PHONE_PID"
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller
fm_trim
fm_finish
