#!/usr/bin/env bash
# Failure mode 1.4: TRUST_DOMAIN with a trailing dot or not a valid DNS name:
# `cannot parse URI "spiffe://example.org.": invalid domain (...)` — the agent
# exits 2 before it enrolls (token unused), the controller refuses to start,
# and a certificate whose SPIFFE ID has an invalid domain fails to parse.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 1.4 "SPIFFE Trust Domain Invalid" "cannot parse URI ... invalid domain"
T="$E2E_TMP"
# Log lines escape the quotes inside a value (\"); ztr-pki prints them raw.
SHAPE='cannot parse URI \\?"spiffe://[^"\\]*\\?": invalid domain'
start_controller ctl || exit 1
tok=$(ctl token create --role tunneler --name laptop)

run_agent tunneler laptop ENROLLMENT_TOKEN="$tok" TRUST_DOMAIN=example.org.
fm_seen_re "$AGENT_LOG" "$SHAPE" "trailing dot"
expect_status 2 "TRUST_DOMAIN=example.org.: enrollment fails, exit non-zero"
expect_err_has 'cannot parse URI \"spiffe://example.org.\": invalid domain (trailing dot)' "names the domain and the rule"
[ ! -e "$AGENT_STATE/cert.pem" ]; check "no certificate written" $?
for td in Example.org "example..org" "exa mple.org" "example.org:443"; do
  run_agent tunneler laptop ENROLLMENT_TOKEN="$tok" TRUST_DOMAIN="$td"
  [ "$RUN_STATUS" -eq 2 ] && grep -qE "$SHAPE" <<<"$RUN_ERR"
  check "TRUST_DOMAIN=$td: exit 2 with cannot parse URI ... invalid domain" $?
done
run ctl token list
expect_out_has "name=laptop prefix=false uses_left=1" "no refused configuration used the token"

# The controller refuses the same trust domain.
run env TRUST_DOMAIN=example.org. STATE_DIR="$T/s2" CONTROLLER_LISTEN=127.0.0.1:0 ADMIN_LISTEN=127.0.0.1:0 \
  HEALTH_LISTEN=127.0.0.1:0 ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" "$ZTR_TEST_BIN/controller"
expect_status 2 "controller with TRUST_DOMAIN=example.org. exits non-zero (configuration: 2)"
expect_err_has 'cannot parse URI \"spiffe://example.org.\": invalid domain' "controller symptom"

# Certificate parse fails: a leaf whose URI SAN has an invalid domain.
bash "$(dirname "$0")/../../fixtures/foreign-certs.sh" "$T/f" >/dev/null
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$T/f/goodroot.crt" --trust-domain example.org --role tunneler "$T/f/baduri.crt"
expect_status 1 "a certificate with spiffe://Example.org/... does not verify"
grep -qE "$SHAPE" <<<"$RUN_ERR"; check "certificate parse fails: cannot parse URI ... invalid domain ($RUN_ERR)" $?
stop_controller
fm_trim
fm_finish
