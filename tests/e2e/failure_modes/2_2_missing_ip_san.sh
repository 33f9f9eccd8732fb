#!/usr/bin/env bash
# Failure mode 2.2: a connector certificate without an IP SAN for the
# address the tunneler dials. The tunneler dials connectors by IP and
# refuses it with Go's text, verbatim; the client gets nothing and the
# connector is marked down. A certificate whose IP SANs name another address
# is refused too; with the IP SAN back, the request goes through.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 2.2 "Missing IP SAN" "x509: cannot validate certificate for <IP> because it doesn't contain any IP SANs"
PKI="$ZTR_TEST_BIN/ztr-pki"
dp_setup || exit 1
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "baseline: a request goes through"
CAD=$(ctl_ca_dir)
"$PKI" csr --key "$DC1_STATE/key.pem" >"$E2E_TMP/dc1.csr"

# The controller's CA, the right role and name, no IP SAN at all.
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/no-ip.pem" >/dev/null
run "$PKI" inspect "$E2E_TMP/no-ip.pem"
grep -qE '^ *ip_sans=$' <<<"$RUN_OUT"; check "the certificate has no IP SAN" $?
restart_dc1_with "$E2E_TMP/no-ip.pem"
SYMPTOM="x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"
expect_refused "no IP SAN" "$SYMPTOM"
fm_seen "$LAPTOP_LOG" "$SYMPTOM"
grep -qF 'msg="connector marked down"' "$LAPTOP_LOG"
check "the tunneler marks the connector down (it cannot connect to it by IP)" $?

# IP SANs for another address: refused as well (Go's text for that case).
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --ip 10.0.0.5 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/other-ip.pem" >/dev/null
restart_dc1_with "$E2E_TMP/other-ip.pem"
expect_refused "IP SAN for another address" "x509: certificate is valid for 10.0.0.5, not 127.0.0.1"

# The IP SAN back: the tunneler connects again.
"$PKI" issue --ca-dir "$CAD" --role connector --name dc1 --ip 127.0.0.1 --csr "$E2E_TMP/dc1.csr" \
  --out "$E2E_TMP/good.pem" >/dev/null
restart_dc1_with "$E2E_TMP/good.pem"
ok=1
for _ in 1 2 3 4 5 6 7 8 9 10; do
  run curl -s -m 10 "http://127.0.0.1:$FWD/"
  [ "$RUN_OUT" = "hello from resource" ] && { ok=0; break; }
  sleep 0.2
done
check "with the IP SAN the request goes through" $ok
stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller
fm_trim
fm_finish
