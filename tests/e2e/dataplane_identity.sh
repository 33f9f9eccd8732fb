#!/usr/bin/env bash
# The tunneler dials connectors by IP and checks who answers (failure-modes
# §2.1–§2.3): a connector certificate without an IP SAN, one from a foreign
# CA, one with the wrong role, one from another trust domain — each is
# refused with the document's text in the tunneler's log, and the client
# gets nothing.
. "$(dirname "$0")/lib.sh"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
ctl resource add web --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT"
check "connector starts" $?
keep_agent DC1
DC1_ENV=("${AGENT_ENV[@]}")
ctl allow --tunneler laptop --resource web >/dev/null
FWD=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$FWD=web" SOCKS5_LISTEN=off CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "baseline: a request goes through"

# The controller's CA in the layout ztr-pki reads.
CAD="$E2E_TMP/ctl-ca"; mkdir -p "$CAD"
cp "$CTL_STATE/ca/ca-1.crt" "$CAD/ca.crt"; cp "$CTL_STATE/ca/ca-1.key" "$CAD/ca.key"
"$PKI" csr --key "$DC1_STATE/key.pem" >"$E2E_TMP/dc1.csr"

# §2.2: no IP SAN for the address the tunneler dials.
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/no-ip.pem" >/dev/null
restart_dc1_with "$E2E_TMP/no-ip.pem"
expect_refused "§2.2 no IP SAN" \
  "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"
grep -qF 'msg="connector marked down"' "$LAPTOP_LOG"
check "the connector is marked down with backoff" $?

# §2.1: a CA the tunneler does not trust.
"$PKI" ca init --trust-domain example.org --out "$E2E_TMP/foreign" >/dev/null
"$PKI" issue --ca-dir "$E2E_TMP/foreign" --role connector --name dc1 --ip 127.0.0.1 \
  --csr "$E2E_TMP/dc1.csr" --out "$E2E_TMP/foreign.pem" >/dev/null
restart_dc1_with "$E2E_TMP/foreign.pem"
expect_refused "§2.1 foreign CA" "x509: certificate signed by unknown authority"

# §2.3: the right CA, the wrong role.
"$PKI" issue --ca-dir "$CAD" --role tunneler --name dc1 --ip 127.0.0.1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/role.pem" >/dev/null
restart_dc1_with "$E2E_TMP/role.pem"
expect_refused "§2.3 wrong role" "unexpected SPIFFE role"

# §2.3: a CA the tunneler trusts, for another trust domain.
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
expect_refused "§2.3 other trust domain" "SPIFFE trust domain mismatch"

# The real certificate again: the connector comes back into service.
stop_agent "$LAPTOP_PID"
start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=web" SOCKS5_LISTEN=off \
  CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms
keep_agent LAPTOP
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --ip 127.0.0.1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/good.pem" >/dev/null
restart_dc1_with "$E2E_TMP/good.pem"
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "with a proper certificate the request goes through again"
stop_agent "$LAPTOP_PID"
stop_agent "$DC1_PID"
finish
