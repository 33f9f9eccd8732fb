#!/usr/bin/env bash
# Attack: TLS probes with openssl s_client against a running controller's
# control port (ALPN ztr-ctl/1) and a connector's data port (ztr-data/1):
# TLS 1.2, no ALPN, a wrong ALPN, no client certificate, the wrong role, a
# foreign CA, an expired certificate. Each is refused: s_client's handshake
# or first read fails, and the server logs why (`TLS handshake failed` on
# the controller, `data session refused` on the connector). The control port
# accepts a client without a certificate, but only to enroll: any other
# message is answered with permission_denied and the session ends.
. "$(dirname "$0")/../e2e/lib.sh"
PKI="$ZTR_TEST_BIN/ztr-pki"
T="$E2E_TMP"
start_controller ctl || exit 1
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
check "connector starts" $?
keep_agent DC1
wait_for_line "$DC1_LOG" 'msg="data listener started"' 10
DATA="127.0.0.1:$(grep -F 'msg="data listener started"' "$DC1_LOG" | tail -1 | tr ' ' '\n' |
  sed -n 's/^port=//p')"
CA="$CTL_STATE/ca/ca-1.crt"

# Identities: the controller's CA in ztr-pki's layout, and another CA.
CAD="$T/ctl-ca"; mkdir -p "$CAD"
cp "$CA" "$CAD/ca.crt"; cp "$CTL_STATE/ca/ca-1.key" "$CAD/ca.key"
"$PKI" ca init --trust-domain example.org --out "$T/foreign-ca" >/dev/null
issue() { # issue NAME CA_DIR ROLE NODE
  "$PKI" issue --ca-dir "$2" --role "$3" ${4:+--name "$4"} --out-key "$T/$1.key" \
    --out "$T/$1.crt" >/dev/null
}
issue tunneler "$CAD" tunneler laptop
issue connector "$CAD" connector dc9
issue controller "$CAD" controller
issue foreign "$T/foreign-ca" tunneler laptop
# Expired: signed by the controller's CA with dates in the past (openssl ca
# is the one openssl command that takes explicit dates).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/expired.key" 2>/dev/null
openssl req -new -key "$T/expired.key" -subj "/CN=laptop" -out "$T/expired.csr" 2>/dev/null
mkdir -p "$T/cadb"; : >"$T/cadb/index.txt"
cat >"$T/cadb/ca.cnf" <<CNF
[ca]
default_ca = old
[old]
database = $T/cadb/index.txt
new_certs_dir = $T/cadb
certificate = $CA
private_key = $CTL_STATE/ca/ca-1.key
default_md = sha256
policy = any
rand_serial = yes
x509_extensions = leaf
[any]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = URI:spiffe://example.org/tunneler/laptop
CNF
openssl ca -batch -config "$T/cadb/ca.cnf" -startdate 20200101000000Z -enddate 20200102000000Z \
  -in "$T/expired.csr" -out "$T/expired.crt" -notext >/dev/null 2>&1
check "expired fixture made" $?

# probe NAME ADDR OPTIONS...: s_client, which sends nothing and waits a
# second for the server's answer (an alert, or the connection closing);
# output in $T/NAME.out.
probe_tls() {
  local name="$1" addr="$2"; shift 2
  sleep 1 | timeout 10 openssl s_client -connect "$addr" -CAfile "$CA" "$@" >"$T/$name.out" 2>&1
}
# refused NAME LOG SERVER_LINE_TEXT CLIENT_TEXT: the server logged the
# refusal and s_client shows CLIENT_TEXT (an alert, or `error:` when the
# server closes after a handshake it completed, as for a missing ALPN).
refused() {
  local name="$1" log="$2" text="$3" client="$4"
  wait_for_line "$log" "$text" 5
  check "$name: the server logs: $text" $?
  grep -qF -- "$client" "$T/$name.out"
  check "$name: s_client shows: $client" $?
}

ctl_refused='msg="TLS handshake failed"'
data_refused='msg="data session refused"'

# --- TLS 1.2: both ports speak TLS 1.3 only.
probe_tls ctl-tls12 "$CTL_ADDR" -tls1_2 -alpn ztr-ctl/1
refused ctl-tls12 "$CTL_LOG" "$ctl_refused" "alert protocol version"
probe_tls data-tls12 "$DATA" -tls1_2 -alpn ztr-data/1 -cert "$T/tunneler.crt" -key "$T/tunneler.key"
refused data-tls12 "$DC1_LOG" "$data_refused" "alert protocol version"
for name in ctl-tls12 data-tls12; do
  grep -q 'Cipher is (NONE)' "$T/$name.out"
  check "$name: no TLS 1.2 session was established" $?
done

# --- ALPN: none, and the other plane's.
probe_tls ctl-noalpn "$CTL_ADDR" -tls1_3
refused ctl-noalpn "$CTL_LOG" 'reason="peer did not negotiate ALPN ztr-ctl/1"' "unexpected eof"
probe_tls data-noalpn "$DATA" -tls1_3 -cert "$T/tunneler.crt" -key "$T/tunneler.key"
refused data-noalpn "$DC1_LOG" 'reason="peer did not negotiate ALPN ztr-data/1"' "unexpected eof"
probe_tls ctl-wrongalpn "$CTL_ADDR" -tls1_3 -alpn ztr-data/1 -cert "$T/tunneler.crt" -key "$T/tunneler.key"
refused ctl-wrongalpn "$CTL_LOG" "$ctl_refused" "alert no application protocol"
probe_tls data-wrongalpn "$DATA" -tls1_3 -alpn ztr-ctl/1 -cert "$T/tunneler.crt" -key "$T/tunneler.key"
refused data-wrongalpn "$DC1_LOG" "$data_refused" "alert no application protocol"

# --- No client certificate on the data port.
before=$(count_lines "$DC1_LOG" "$data_refused")
probe_tls data-nocert "$DATA" -tls1_3 -alpn ztr-data/1
refused data-nocert "$DC1_LOG" "$data_refused" "alert certificate required"
[ "$(count_lines "$DC1_LOG" "$data_refused")" -gt "$before" ]
check "data-nocert: one more refused data session" $?

# --- No client certificate on the control port: enrollment only.
probe_tls ctl-nocert "$CTL_ADDR" -tls1_3 -alpn ztr-ctl/1
grep -q 'ALPN protocol: ztr-ctl/1' "$T/ctl-nocert.out"
check "ctl-nocert: the handshake completes (enrollment needs it)" $?
for msg in '{"type":"hello","version":1,"role":"connector"}' '{"type":"heartbeat","seq":1}' \
           '{"type":"renew","csr":"x"}' '{"type":"bundle_request"}'; do
  run probe raw --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org --send "$msg"
  grep -q '"code":"permission_denied"' <<<"$RUN_OUT$RUN_ERR" &&
    grep -qF 'a session without a client certificate may only enroll' <<<"$RUN_OUT$RUN_ERR"
  check "ctl-nocert: $msg is refused: permission_denied" $?
done
run ctl node list
! grep -q 'connector/\|tunneler/' <<<"$(grep -v dc1 <<<"$RUN_OUT")"
check "ctl-nocert: no node came from an unauthenticated session" $?

# --- The wrong role: a connector dialing a connector; a controller
# certificate as a control-plane client.
probe_tls data-role "$DATA" -tls1_3 -alpn ztr-data/1 -cert "$T/connector.crt" -key "$T/connector.key"
refused data-role "$DC1_LOG" "unexpected SPIFFE role: peer spiffe://example.org/connector/dc9" "alert bad certificate"
probe_tls ctl-role "$CTL_ADDR" -tls1_3 -alpn ztr-ctl/1 -cert "$T/controller.crt" -key "$T/controller.key"
refused ctl-role "$CTL_LOG" "unexpected SPIFFE role: peer spiffe://example.org/controller" "alert bad certificate"

# --- A foreign CA, and an expired certificate, on both ports.
for port in ctl data; do
  if [ "$port" = ctl ]; then addr="$CTL_ADDR" log="$CTL_LOG" alpn=ztr-ctl/1
  else addr="$DATA" log="$DC1_LOG" alpn=ztr-data/1; fi
  probe_tls "$port-foreign" "$addr" -tls1_3 -alpn "$alpn" -cert "$T/foreign.crt" -key "$T/foreign.key"
  refused "$port-foreign" "$log" "x509: certificate signed by unknown authority" "alert unknown ca"
  probe_tls "$port-expired" "$addr" -tls1_3 -alpn "$alpn" -cert "$T/expired.crt" -key "$T/expired.key"
  refused "$port-expired" "$log" "certificate has expired" "alert certificate expired"
done

# The connector and controller are still serving.
health "$DC1_URL"
[ "$(json_value state)" = ONLINE ]
check "the connector is still ONLINE after the probes" $?
finish
