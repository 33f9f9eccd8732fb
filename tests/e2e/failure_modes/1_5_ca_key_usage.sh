#!/usr/bin/env bash
# Failure mode 1.5: a CA certificate without keyCertSign (made by openssl,
# tests/fixtures/foreign-certs.sh) is refused everywhere a CA is loaded:
# the controller will not run on it as its operator CA (exit 1), an agent
# will not enroll with it as CONTROLLER_CA (exit 2, token unused), and a
# chain through an intermediate without keyCertSign does not verify.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 1.5 "CA Key Usage Missing" "CA certificate missing key usage"
T="$E2E_TMP"
bash "$(dirname "$0")/../../fixtures/foreign-certs.sh" "$T/f" >/dev/null
run "$ZTR_TEST_BIN/ztr-pki" inspect "$T/f/nocertsign.crt"
expect_out_has "ca=true" "the fixture is a CA..."
! grep -q "keyCertSign" <<<"$RUN_OUT"; check "... without keyCertSign" $?

# The controller with that CA as its operator CA: refuses to start.
base=(TRUST_DOMAIN=example.org STATE_DIR="$T/s" CONTROLLER_LISTEN=127.0.0.1:0
      ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN")
run env "${base[@]}" CA_CERT="$T/f/nocertsign.crt" CA_KEY="$T/f/nocertsign.key" "$ZTR_TEST_BIN/controller"
printf '%s\n' "$RUN_ERR" >"$T/controller-nocertsign.log"
fm_seen "$T/controller-nocertsign.log"
expect_status 1 "controller on a CA without keyCertSign exits non-zero"
expect_err_has 'CA certificate missing key usage (\"nocertsign\" needs CA:TRUE and keyCertSign)' "names the CA and the rule (quotes escaped in the log value)"
! grep -qF 'msg="controller started"' <<<"$RUN_ERR"; check "no controller started" $?
# The same openssl-made CA family with keyCertSign is fine (the check is not
# just refusing foreign CAs).
start_controller good CA_CERT="$T/f/goodroot.crt" CA_KEY="$T/f/goodroot.key"
check "controller starts on an operator CA with keyCertSign" $?

# An agent whose CONTROLLER_CA lacks keyCertSign: enrollment fails.
tok=$(ctl token create --role connector --name dc1 --address 127.0.0.1)
run_agent connector dc1 ENROLLMENT_TOKEN="$tok" CONTROLLER_CA="$T/f/nocertsign.crt"
fm_seen "$AGENT_LOG"
expect_status 2 "agent with CONTROLLER_CA without keyCertSign exits non-zero"
[ ! -e "$AGENT_STATE/cert.pem" ]; check "no certificate written" $?
# ... even next to the right CA in the same file (strict: every CA is checked).
cat "$T/f/nocertsign.crt" "$T/f/goodroot.crt" >"$T/mixed.pem"
run_agent connector dc1 ENROLLMENT_TOKEN="$tok" CONTROLLER_CA="$T/mixed.pem"
expect_status 2 "bundle with one CA without keyCertSign: exit non-zero"
expect_err_has "CA certificate missing key usage" "mixed bundle symptom"
run ctl token list
expect_out_has "name=dc1 prefix=false uses_left=1" "enrollment never reached the controller (token unused)"
# With the right CA the same token enrolls.
start_agent connector dc1 ENROLLMENT_TOKEN="$tok" CONTROLLER_CA="$T/f/goodroot.crt"
wait_for_state ONLINE 10; check "with a proper CA the agent enrolls and is ONLINE" $?
stop_agent

# An intermediate without keyCertSign breaks the chain.
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$T/f/goodroot.crt" --trust-domain example.org --role connector "$T/f/underbad-chain.pem"
expect_status 1 "a leaf under an intermediate without keyCertSign does not verify"
expect_err_has "CA certificate missing key usage" "intermediate symptom"
stop_controller
fm_trim
fm_finish
