#!/usr/bin/env bash
# Failure mode 7.5 (seed 003): partial mTLS material — a federation
# certificate without its key, or the reverse. The seed's client fell back
# to plaintext; ztr refuses to start (exit 2, a configuration error) with
# the seed's text naming which half is missing and `no plaintext fallback`.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 7.5 "mTLS partial config" "partial mTLS config — cert_pem=true, key_pem=false"
T="$E2E_TMP"
echo "-----BEGIN CERTIFICATE-----" >"$T/fed.crt"
echo "-----BEGIN PRIVATE KEY-----" >"$T/fed.key"
start() {
  run timeout 10 env TRUST_DOMAIN=a.example STATE_DIR="$T/state" CONTROLLER_LISTEN=127.0.0.1:0 \
    ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=off ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" \
    FEDERATION_LISTEN=127.0.0.1:0 "$@" "$ZTR_TEST_BIN/controller"
}
start FEDERATION_CERT="$T/fed.crt"
expect_status 2 "a certificate without its key: refused at start-up"
fm_seen_text "$RUN_ERR"
expect_err_has "no plaintext fallback" "never a plaintext fallback"
start FEDERATION_CERT="$T/fed.crt" FEDERATION_KEY="$T/missing.key"
expect_status 2 "a key file that is not there counts as missing"
expect_err_has "partial mTLS config — cert_pem=true, key_pem=false" "the same text"
start FEDERATION_KEY="$T/fed.key"
expect_status 2 "a key without its certificate: refused too"
expect_err_has "partial mTLS config — cert_pem=false, key_pem=true" "the inverse text"
fm_seen_also <(printf '%s\n' "$RUN_ERR") "partial mTLS config — cert_pem=false, key_pem=true"
[ ! -e "$T/state" ]; check "nothing was started: no state directory" $?
fm_trim
fm_finish
