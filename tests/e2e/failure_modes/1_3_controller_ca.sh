#!/usr/bin/env bash
# Failure mode 1.3: CONTROLLER_CA missing (wrong path, unset for a first
# enrollment) or not a CA certificate (bad PEM): the agent refuses before it
# connects — `failed to read controller CA` / `invalid internal CA`, exit 2 —
# and the token stays unused. The controller's own operator CA (CA_CERT)
# fails the same way at start-up.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 1.3 "Controller CA Missing or Invalid" "failed to read controller CA or invalid internal CA"
T="$E2E_TMP"
start_controller ctl || exit 1
tok=$(ctl token create --role connector --name dc1 --address 127.0.0.1)

# agent_refuses NAME DESCRIPTION TEXT CONTROLLER_CA-VALUE
agent_refuses() {
  run_agent connector "$1" ENROLLMENT_TOKEN="$tok" CONTROLLER_CA="$4"
  expect_status 2 "$2: enrollment fails, exit non-zero"
  expect_err_has "$3" "$2"
  [ ! -e "$AGENT_STATE/cert.pem" ]; check "$2: no certificate written" $?
}
agent_refuses ca1 "CONTROLLER_CA file missing" \
  "failed to read controller CA: open $T/nope.crt: no such file or directory" "$T/nope.crt"
fm_seen_also "$AGENT_LOG" "failed to read controller CA"
agent_refuses ca2 "CONTROLLER_CA unset for a first enrollment" "failed to read controller CA" ""
printf 'not a certificate\n' >"$T/garbage.crt"
agent_refuses ca3 "CONTROLLER_CA not PEM" "invalid internal CA" "$T/garbage.crt"
fm_seen_also "$AGENT_LOG" "invalid internal CA"
# A truncated PEM (the path is right, the file is cut short).
head -c 200 "$CTL_STATE/ca/ca-1.crt" >"$T/truncated.crt"
agent_refuses ca4 "CONTROLLER_CA truncated" "invalid internal CA" "$T/truncated.crt"
# A directory where the file should be.
mkdir -p "$T/cadir"
agent_refuses ca5 "CONTROLLER_CA is a directory" "failed to read controller CA" "$T/cadir"

run ctl token list
expect_out_has "name=dc1 prefix=false uses_left=1" "the token was never used: no agent reached the controller"
run ctl events
! grep -qE "kind=(enrolled|denied)" <<<"$RUN_OUT"; check "no enrollment attempt reached the controller" $?
stop_controller

# The controller with an operator CA (CA_CERT/CA_KEY): the same texts, exit 1.
base=(TRUST_DOMAIN=example.org STATE_DIR="$T/s" CONTROLLER_LISTEN=127.0.0.1:0
      ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN")
run env "${base[@]}" CA_CERT="$T/nope.crt" CA_KEY="$T/nope.key" "$ZTR_TEST_BIN/controller"
expect_status 1 "controller: operator CA missing"
expect_err_has "failed to read controller CA: open $T/nope.crt: no such file or directory" "controller: missing CA_CERT"
run env "${base[@]}" CA_CERT="$T/garbage.crt" CA_KEY="$T/garbage.crt" "$ZTR_TEST_BIN/controller"
expect_status 1 "controller: operator CA not PEM"
expect_err_has "invalid internal CA" "controller: bad CA_CERT"
fm_trim
fm_finish
