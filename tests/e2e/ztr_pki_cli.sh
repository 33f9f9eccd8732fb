#!/usr/bin/env bash
# The ztr-pki contract other tests and operators depend on: parse-id,
# verify, ca init, issue, inspect — exit codes and exact output.
. "$(dirname "$0")/lib.sh"
P="$ZTR_TEST_BIN/ztr-pki"
T="$E2E_TMP"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

# parse-id
run "$P" parse-id spiffe://example.org/connector/dc1-a
expect_status 0 "parse-id accepts a connector ID"
expect_out $'trust_domain=example.org\npath=/connector/dc1-a' "parse-id prints td and path"
run "$P" parse-id spiffe://example.org
expect_out $'trust_domain=example.org\npath=' "parse-id of a bare trust domain"
run "$P" parse-id spiffe://example.org./connector/x
expect_status 1 "trailing dot is rejected"
expect_err_has 'cannot parse URI "spiffe://example.org./connector/x": invalid domain' "failure-modes 1.4 text"
[ "$(wc -l <<<"$RUN_ERR")" -eq 1 ]; check "one line on stderr" $?
run "$P" parse-id 'spiffe://example.org/a/../b'
expect_status 1 "dot segments are rejected"
run "$P" parse-id
expect_status 2 "missing argument is a usage error"

# ca init: key 0600, exclusive; bad trust domain
run "$P" ca init --trust-domain example.org. --out "$T/badca"
expect_status 1 "ca init refuses TRUST_DOMAIN=example.org."
expect_err_has 'cannot parse URI "spiffe://example.org.": invalid domain' "ca init names the bad domain"
[ ! -e "$T/badca/ca.key" ]; check "no key written for a bad domain" $?
run "$P" ca init --trust-domain example.org --out "$T/ca"
expect_status 0 "ca init"
expect_file_mode "$T/ca/ca.key" 600 "CA key is private"
expect_file_mode "$T/ca/ca.crt" 644 "CA certificate is readable"
cp "$T/ca/ca.key" "$T/ca.key.orig"
run "$P" ca init --trust-domain example.org --out "$T/ca"
expect_status 1 "ca init never overwrites a CA key"
cmp -s "$T/ca/ca.key" "$T/ca.key.orig"; check "existing CA key untouched" $?
run "$P" inspect "$T/ca/ca.crt"
expect_out_has "ca=true" "CA is a CA"
expect_out_has "key_usage=keyCertSign cRLSign" "CA key usage"
expect_out_has "spiffe_id=spiffe://example.org" "CA names its trust domain"

# issue with a generated key, then verify in every way that matters
run "$P" issue --ca-dir "$T/ca" --role connector --name dc1-a --ip 127.0.0.1 --ip ::1 \
  --ttl 1h --out-key "$T/c.key" --out "$T/c.crt"
expect_status 0 "issue a connector SVID"
expect_out "issued spiffe://example.org/connector/dc1-a" "issue names the SVID"
expect_file_mode "$T/c.key" 600 "leaf key is private"
run "$P" inspect "$T/c.crt"
expect_out_has "lifetime_seconds=3660" "1h SVID is one hour plus a minute of skew"
expect_out_has "ip_sans=127.0.0.1,::1" "IP SANs"
expect_out_has "uri_sans=1" "exactly one URI SAN"
expect_out_has "ca=false" "leaf is not a CA"
expect_out_has "ext_key_usage=serverAuth clientAuth" "EKU"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role connector --ip 127.0.0.1 "$T/c.crt"
expect_status 0 "verify a good leaf"
expect_out "ok spiffe://example.org/connector/dc1-a" "verify prints ok <id>"
run "$P" verify "$T/c.crt" --bundle "$T/ca/ca.crt" --trust-domain example.org --role connector --ip ::1
expect_status 0 "options after the certificate, IPv6 dial"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role tunneler "$T/c.crt"
expect_status 1 "wrong role"
expect_err_has "unexpected SPIFFE role" "failure-modes 2.3 role text"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.com --role connector "$T/c.crt"
expect_err_has "SPIFFE trust domain mismatch" "failure-modes 2.3 domain text"
now=$(date +%s)
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role connector --time $((now + 7200)) "$T/c.crt"
expect_status 1 "expired at a later --time"
expect_err_has "certificate has expired" "expiry text"

# no IP SAN: the Go text, verbatim (failure-modes 2.2)
run "$P" issue --ca-dir "$T/ca" --role connector --name noip --out-key "$T/n.key" --out "$T/n.crt"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role connector --ip 10.0.0.5 "$T/n.crt"
expect_status 1 "connector without IP SANs"
expect_err "x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs" "failure-modes 2.2 text"

# foreign CA (failure-modes 2.1) and a CA without keyCertSign (1.5)
run "$P" ca init --trust-domain example.org --out "$T/other"
run "$P" verify --bundle "$T/other/ca.crt" --trust-domain example.org --role connector "$T/c.crt"
expect_err "x509: certificate signed by unknown authority" "failure-modes 2.1 text"
bash "$ROOT/tests/fixtures/foreign-certs.sh" "$T/foreign" >/dev/null
run "$P" verify --bundle "$T/foreign/nocertsign.crt" --trust-domain example.org --role connector "$T/c.crt"
expect_status 1 "bundle CA without keyCertSign"
expect_err_has "CA certificate missing key usage" "failure-modes 1.5 text"

# bundle with two CAs; leaf + intermediate chain made by openssl
cat "$T/other/ca.crt" "$T/ca/ca.crt" > "$T/bundle.pem"
run "$P" verify --bundle "$T/bundle.pem" --trust-domain example.org --role connector "$T/c.crt"
expect_status 0 "multi-CA bundle"
run "$P" verify --bundle "$T/foreign/goodroot.crt" --trust-domain example.org --role connector --ip 127.0.0.3 "$T/foreign/chained-chain.pem"
expect_out "ok spiffe://example.org/connector/chained" "openssl leaf + intermediate"

# issue from a CSR made by ztr-pki and one made by openssl; intermediate CA
run "$P" keygen --out "$T/t.key"
expect_file_mode "$T/t.key" 600 "keygen writes a private key"
"$P" csr --key "$T/t.key" --cn laptop > "$T/t.csr"
run "$P" issue --ca-dir "$T/ca" --role tunneler --name laptop --csr "$T/t.csr" --out "$T/t.crt"
expect_status 0 "issue from a ztr CSR"
run "$P" issue --ca-dir "$T/ca" --role tunneler --name osl --csr "$T/foreign/openssl.csr" --out "$T/o.crt"
expect_status 0 "issue from an openssl CSR"
openssl x509 -in "$T/t.crt" -noout -pubkey > "$T/cert.pub" 2>/dev/null
openssl pkey -in "$T/t.key" -pubout > "$T/key.pub" 2>/dev/null
cmp -s "$T/cert.pub" "$T/key.pub"; check "certificate certifies the CSR's key" $?
run "$P" ca intermediate --ca-dir "$T/ca" --out "$T/inter" --name "issuing CA"
expect_status 0 "intermediate CA"
run "$P" issue --ca-dir "$T/inter" --role tunneler --name deep --out-key "$T/d.key" --out "$T/d.crt"
cat "$T/d.crt" "$T/inter/ca.crt" > "$T/d-chain.pem"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role tunneler "$T/d-chain.pem"
expect_out "ok spiffe://example.org/tunneler/deep" "leaf via a ztr intermediate"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role tunneler "$T/d.crt"
expect_err "x509: certificate signed by unknown authority" "intermediate missing from the chain"
openssl verify -CAfile "$T/ca/ca.crt" -untrusted "$T/inter/ca.crt" "$T/d.crt" >/dev/null 2>&1
check "openssl agrees with the chain" $?

# bad input: never a crash
printf 'garbage' > "$T/garbage.pem"
run "$P" verify --bundle "$T/garbage.pem" --trust-domain example.org --role connector "$T/c.crt"
expect_status 1 "garbage bundle"
expect_err_has "invalid internal CA" "garbage bundle text"
run "$P" verify --bundle "$T/missing.pem" --trust-domain example.org --role connector "$T/c.crt"
expect_err_has "open $T/missing.pem: no such file or directory" "missing bundle file"
run "$P" inspect "$T/garbage.pem"
expect_status 1 "inspect garbage"
run "$P" verify --bundle "$T/ca/ca.crt" --trust-domain example.org --role admin "$T/c.crt"
expect_status 2 "unknown role is a usage error"
finish
