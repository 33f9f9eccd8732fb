#!/usr/bin/env bash
# Attack: reach the admin API from the network and read or steal its bearer
# token. With ADMIN_TLS=true the admin API speaks TLS 1.3 only, so a
# non-loopback ADMIN_LISTEN needs no ADMIN_LISTEN_INSECURE: TLS 1.2, plain
# HTTP and a client without the CA get no HTTP answer, and the CLI refuses
# a server it cannot verify before it sends the token. Its certificate comes
# from an admin CA of the controller's own (STATE_DIR/admin-tls/ca.pem), not
# from the agents' CA: a connector allowed 127.0.0.1 holds a certificate of
# that CA with that IP SAN, and posing as the admin API with its key must
# not get the CLI's token. Bad TLS files stop the controller naming the key.
# Listens on 0.0.0.0, connects only to 127.0.0.1.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
ctl_env=(TRUST_DOMAIN=example.org STATE_DIR="$T/bad" CONTROLLER_LISTEN=127.0.0.1:0
  HEALTH_LISTEN=127.0.0.1:0 ADMIN_LISTEN=0.0.0.0:0 ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN")

# ---- bad settings stop the controller, naming the key ----------------------
run timeout 10 env "${ctl_env[@]}" "$ZTR_TEST_BIN/controller"
expect_status 2 "0.0.0.0 in plain HTTP is still refused"
expect_err_has "set ADMIN_TLS=true" "the refusal offers TLS"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/op.key" \
  -out "$T/op.crt" -days 2 -subj /CN=ctl -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/other.key" \
  -out "$T/other.crt" -days 2 -subj /CN=other >/dev/null 2>&1
echo "not a certificate" >"$T/garbage.crt"
run timeout 10 env "${ctl_env[@]}" ADMIN_TLS_CERT="$T/op.crt" ADMIN_TLS_KEY="$T/op.key" \
  "$ZTR_TEST_BIN/controller"
expect_status 2 "ADMIN_TLS_CERT without ADMIN_TLS=true is refused, not served in plain HTTP"
expect_err_has "env: ADMIN_TLS_CERT: set, but ADMIN_TLS is false" "the error names the key"
run timeout 10 env "${ctl_env[@]}" ADMIN_TLS=true ADMIN_TLS_CERT="$T/garbage.crt" \
  ADMIN_TLS_KEY="$T/op.key" "$ZTR_TEST_BIN/controller"
expect_status 2 "a certificate file that holds no certificate is a config error"
expect_err_has "env: ADMIN_TLS_CERT: $T/garbage.crt: not a PEM certificate" "naming the key"
run timeout 10 env "${ctl_env[@]}" ADMIN_TLS=true ADMIN_TLS_CERT="$T/op.crt" \
  ADMIN_TLS_KEY="$T/other.key" "$ZTR_TEST_BIN/controller"
expect_status 2 "a key that is not the certificate's is a config error"
expect_err_has "env: ADMIN_TLS_KEY: $T/other.key (with ADMIN_TLS_CERT $T/op.crt): TLS certificate or key refused" \
  "naming the key and the reason"
expect_err_has "do not match" "in GnuTLS's words"
run timeout 10 env "${ctl_env[@]}" ADMIN_TLS=true ADMIN_TLS_KEY="$T/op.key" \
  "$ZTR_TEST_BIN/controller"
expect_status 2 "a key without its certificate is a config error"
expect_err_has "env: ADMIN_TLS_KEY: given without ADMIN_TLS_CERT" "naming both keys"

# ---- the issued certificate, on 0.0.0.0 --------------------------------------
start_controller ctl ADMIN_LISTEN=0.0.0.0:0 ADMIN_TLS=true || exit 1
check "ADMIN_TLS=true: a non-loopback ADMIN_LISTEN starts without ADMIN_LISTEN_INSECURE" 0
! grep -qF 'ADMIN_LISTEN_INSECURE' "$CTL_LOG"
check "and no insecure warn line" $?
grep -qF 'msg="admin API listening" addr=0.0.0.0:0' "$CTL_LOG" &&
  grep -F 'msg="admin API listening"' "$CTL_LOG" | grep -qF 'tls=true'
check "the admin API says it listens with TLS" $?
ADMIN_CA_FILE="$CTL_STATE/admin-tls/ca.pem"
expect_file_mode "$CTL_STATE/admin-tls/ca.key" 600 "the admin CA key is private"
fingerprint="$(openssl x509 -in "$ADMIN_CA_FILE" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' |
  tr 'A-F' 'a-f')"
grep -qF "msg=\"admin API certificate issued\" names=127.0.0.1,::1 " "$CTL_LOG" &&
  grep -qF "ca_fingerprint=$fingerprint" "$CTL_LOG"
check "the issued certificate's names and its CA's fingerprint are logged" $?
port="${ADMIN_URL##*:}"
[ "${ADMIN_URL%%:*}" = https ]
check "the e2e helper took the https URL from the start line" $?

run curl -sS -m 5 --tlsv1.3 --cacert "$ADMIN_CA_FILE" -H "Authorization: Bearer $E2E_ADMIN_TOKEN" \
  -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/api/admin/nodes"
expect_out 200 "curl over TLS 1.3 with the admin CA and the token is served"
run curl -sS -m 5 --cacert "$ADMIN_CA_FILE" -o /dev/null -w '%{http_code}' \
  "https://127.0.0.1:$port/api/admin/nodes"
expect_out 401 "over TLS the token is still required"
run curl -sS -m 5 --tlsv1.2 --tls-max 1.2 --cacert "$ADMIN_CA_FILE" -o /dev/null \
  -w '%{http_code}' -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "https://127.0.0.1:$port/api/admin/nodes"
[ "$RUN_STATUS" -ne 0 ] && [ "$RUN_OUT" = 000 ]
check "TLS 1.2 is refused: no HTTP answer (curl exit $RUN_STATUS)" $?
run curl -sS -m 5 --cacert "$CTL_STATE/ca/ca-1.crt" -o /dev/null -w '%{http_code}' \
  -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "https://127.0.0.1:$port/api/admin/nodes"
[ "$RUN_STATUS" -eq 60 ] && [ "$RUN_OUT" = 000 ]
check "the agents' CA does not verify the admin API (curl exit $RUN_STATUS)" $?

# Plain HTTP to the TLS port: whatever comes back is not HTTP. In a
# subshell: the server may close before the request is written (SIGPIPE).
reply="$(
  exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
  printf 'GET /api/admin/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
    "$E2E_ADMIN_TOKEN" >&3
  timeout 5 cat <&3 | head -c 200 | tr -d '\0'
)" 2>/dev/null
! grep -q 'HTTP/' <<<"$reply"
check "plain HTTP to the TLS port gets no HTTP answer" $?
run curl -sS -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/admin/nodes"
[ "$RUN_STATUS" -ne 0 ] && [ "$RUN_OUT" = 000 ]
check "curl over plain HTTP gets no status (exit $RUN_STATUS)" $?

# ---- the CLI -------------------------------------------------------------------
run env STATE_DIR="$CTL_STATE" "$ZTR_TEST_BIN/controller" node list
expect_status 0 "the CLI finds the admin CA in STATE_DIR and lists nodes over TLS"
token="$(env STATE_DIR="$CTL_STATE" "$ZTR_TEST_BIN/controller" token create --role connector --name dc1 \
  --address 127.0.0.1)"
[ -n "$token" ]
check "the CLI creates a token over TLS" $?
cp "$ADMIN_CA_FILE" "$T/copied-ca.pem"
run env STATE_DIR=/nonexistent ADMIN_CA="$T/copied-ca.pem" "$ZTR_TEST_BIN/controller" token list
expect_status 0 "another machine's CLI with a copy of ca.pem in ADMIN_CA"
expect_out_has "name=dc1" "sees the token"
run env STATE_DIR=/nonexistent "$ZTR_TEST_BIN/controller" node list --ca "$T/copied-ca.pem"
expect_status 0 "the same with --ca"
run env STATE_DIR=/nonexistent ADMIN_CA="$CTL_STATE/ca/ca-1.crt" "$ZTR_TEST_BIN/controller" node list
expect_status 3 "the CLI refuses an admin API its CA file does not verify"
expect_err_has "SSL certificate problem" "with the TLS reason"
expect_err_has "hint: the admin API's certificate does not verify against $CTL_STATE/ca/ca-1.crt, from ADMIN_CA" \
  "and what to fix"
run env STATE_DIR="$CTL_STATE" ADMIN_URL="https://127.0.0.2:$port" "$ZTR_TEST_BIN/controller" node list
expect_status 3 "the CLI refuses the right certificate for a host it does not name"
expect_err_has "no alternative certificate subject name matches target host name '127.0.0.2'" \
  "with the TLS reason"
run env STATE_DIR=/nonexistent ADMIN_CA="$T/missing.pem" "$ZTR_TEST_BIN/controller" node list
expect_status 2 "an unreadable ADMIN_CA never falls back to another trust store"
expect_err_has "ADMIN_CA: cannot read $T/missing.pem" "it says which file"
run env STATE_DIR=/nonexistent "$ZTR_TEST_BIN/controller" node list
expect_status 3 "without any CA the system's trust store does not vouch for it either"
run env ADMIN_URL="http://127.0.0.1:$port" "$ZTR_TEST_BIN/controller" node list
expect_status 3 "the CLI over plain HTTP gets no answer"
expect_err_has "hint: no HTTP answer; a controller with ADMIN_TLS=true answers only https://" \
  "and is told why"

# ---- a connector's certificate poses as the admin API ------------------------------
# It chains to the agents' CA and names 127.0.0.1, as the admin certificate
# does: a CLI trusting that CA would hand it the bearer token.
mkdir -p "$T/dc1"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CTL_STATE/ca/ca-1.crt" \
  --token "$token" --role connector --name dc1 --address 127.0.0.1 --out "$T/dc1"
expect_status 0 "a connector enrolls with an IP SAN of 127.0.0.1"
fake_port="$(free_port)"
# s_server prints what a client sends; its stdin must not end (a FIFO
# held open for reading and writing never does).
mkfifo "$T/fake.in"
exec 5<>"$T/fake.in"
openssl s_server -quiet -accept "127.0.0.1:$fake_port" -cert "$T/dc1/cert.pem" \
  -key "$T/dc1/key.pem" -tls1_3 <&5 >"$T/fake.out" 2>/dev/null &
E2E_PIDS+=("$!")
for _ in $(seq 1 100); do
  (exec 4<>"/dev/tcp/127.0.0.1/$fake_port") 2>/dev/null && break
  sleep 0.05
done
run env STATE_DIR="$CTL_STATE" ADMIN_URL="https://127.0.0.1:$fake_port" "$ZTR_TEST_BIN/controller" node list
expect_status 3 "the CLI refuses the connector posing as the admin API"
expect_err_has "SSL certificate problem" "it does not verify against the admin CA"
sleep 0.3
! grep -qF "$E2E_ADMIN_TOKEN" "$T/fake.out"
check "the impostor never saw the bearer token" $?
# What trusting the agents' CA would have cost: the impostor reads the token.
curl -s -m 2 --cacert "$CTL_STATE/ca/ca-1.crt" -H "Authorization: Bearer $E2E_ADMIN_TOKEN" \
  "https://127.0.0.1:$fake_port/api/admin/nodes" >/dev/null 2>&1
sleep 0.3
grep -qF "Authorization: Bearer $E2E_ADMIN_TOKEN" "$T/fake.out"
check "(a client trusting the agents' CA would have handed it the token)" $?

# ---- health stays where it was; a restart keeps the CA -------------------------------
run curl -s -m 5 -o /dev/null -w '%{http_code}' "$HEALTH_URL/health"
expect_out 200 "/health answers on HEALTH_LISTEN"
run curl -s -m 5 -o /dev/null -w '%{http_code}' "$HEALTH_URL/metrics"
expect_out 200 "/metrics answers on HEALTH_LISTEN"
ca_before="$(cat "$ADMIN_CA_FILE")"
stop_controller
start_controller ctl ADMIN_LISTEN=0.0.0.0:0 ADMIN_TLS=true || exit 1
[ "$(cat "$ADMIN_CA_FILE")" = "$ca_before" ]
check "a restart keeps the admin CA" $?
run env STATE_DIR=/nonexistent ADMIN_CA="$T/copied-ca.pem" "$ZTR_TEST_BIN/controller" node list
expect_status 0 "so a copied ca.pem keeps working"
expect_out_has "name=dc1" "with the node enrolled before"

# ---- the operator's certificate -------------------------------------------------------
stop_controller
start_controller op ADMIN_LISTEN=0.0.0.0:0 ADMIN_TLS=true ADMIN_TLS_CERT="$T/op.crt" \
  ADMIN_TLS_KEY="$T/op.key" || exit 1
grep -qF "msg=\"admin API certificate loaded\" cert=$T/op.crt" "$CTL_LOG"
check "the operator's certificate is loaded" $?
[ ! -e "$CTL_STATE/admin-tls" ]
check "and no admin CA is made" $?
run env ADMIN_CA="$T/op.crt" "$ZTR_TEST_BIN/controller" node list
expect_status 0 "the CLI verifies the operator's certificate with ADMIN_CA"
finish
