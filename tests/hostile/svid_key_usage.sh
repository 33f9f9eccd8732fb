#!/usr/bin/env bash
# Attack: a certificate from the trusted CA that is not an X509-SVID. The
# attacker holds a key certified by the deployment's own CA (an operator
# signed it with openssl, or a CA was misused) for the SPIFFE ID of an
# allowed tunneler, but with key usages an SVID must not have (X509-SVID
# §4.3/§4.4/§5.2): CA:TRUE, keyCertSign, cRLSign, no digitalSignature, no
# keyUsage at all, an EKU without clientAuth (that one wolfSSL refuses
# itself; the operator now reads why). Each one dials the connector's
# data port; each is refused during the handshake, the connector logs why,
# and no data session opens. A certificate with the SVID profile, made the
# same way, is accepted (the harness is not refusing everything).
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
start_peer http || exit 1
ctl resource add web --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$PEER_PORT"
check "connector starts" $?
keep_agent DC1
ctl allow --tunneler laptop --resource web >/dev/null
wait_for_line "$DC1_LOG" 'msg="data listener started"' 10
DATA_PORT="$(grep -F 'msg="data listener started"' "$DC1_LOG" | tail -1 | tr ' ' '\n' |
  sed -n 's/^port=//p')"
# The allowlist that names laptop has reached the connector.
for _ in $(seq 1 100); do
  [ "$(grep -F 'msg="allowlist received"' "$DC1_LOG" | tail -1 | sed -n 's/.*tunnelers=\([0-9]*\).*/\1/p')" = 1 ] && break
  sleep 0.1
done

CA="$CTL_STATE/ca/ca-1.crt" CAKEY="$CTL_STATE/ca/ca-1.key" T="$E2E_TMP"
SAN='subjectAltName=URI:spiffe://example.org/tunneler/laptop'
# forge NAME EXTENSIONS: a leaf for tunneler laptop signed by the controller's CA.
forge() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/$1.key" 2>/dev/null
  openssl req -new -key "$T/$1.key" -subj "/CN=laptop" -out "$T/$1.csr" 2>/dev/null
  printf '%b\n%s\n' "$2" "$SAN" >"$T/$1.ext"
  openssl x509 -req -in "$T/$1.csr" -CA "$CA" -CAkey "$CAKEY" -CAcreateserial -CAserial "$T/ca.srl" \
    -days 1 -extfile "$T/$1.ext" -out "$T/$1.crt" 2>/dev/null
}
# dial NAME: a TLS 1.3 client presenting NAME's certificate on the data port.
dial() {
  timeout 10 openssl s_client -connect "127.0.0.1:$DATA_PORT" -tls1_3 -alpn ztr-data/1 \
    -cert "$T/$1.crt" -key "$T/$1.key" -CAfile "$CA" -quiet </dev/null >"$T/$1.out" 2>&1
}

forge good 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth'
dial good
wait_for_line "$DC1_LOG" 'msg="data session opened" spiffe_id=spiffe://example.org/tunneler/laptop' 5
check "an openssl-made certificate with the SVID profile opens a session" $?

# name | extensions | what the connector says
cases=(
  "leafca|basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyCertSign|is a CA certificate; an SVID must not be"
  "certsign|basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign|has keyUsage keyCertSign; an SVID must not sign certificates"
  "crlsign|basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,cRLSign|has keyUsage cRLSign; an SVID must not sign CRLs"
  "nodigsig|basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyAgreement|lacks keyUsage digitalSignature"
  "noku|basicConstraints=critical,CA:FALSE|lacks keyUsage digitalSignature"
  "serveronly|basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth|x509: certificate specifies an incompatible key usage"
)
opened=$(count_lines "$DC1_LOG" 'msg="data session opened"')
for c in "${cases[@]}"; do
  IFS='|' read -r name ext text <<<"$c"
  forge "$name" "$ext"
  dial "$name"
  wait_for_line "$DC1_LOG" "$text" 5
  check "$name: the connector refuses the handshake: $text" $?
  grep -F 'msg="data session refused"' "$DC1_LOG" | grep -qF "$text"
  check "$name: logged as a refused data session" $?
  # The server drops the handshake: s_client reports an error, never data.
  grep -q ':error:' "$T/$name.out"
  check "$name: the client's handshake fails" $?
done
[ "$(count_lines "$DC1_LOG" 'msg="data session opened"')" -eq "$opened" ]
check "no forged certificate opened a data session" $?
finish
