#!/usr/bin/env bash
# Failure mode 1.1: an agent with no identity in STATE_DIR and no
# ENROLLMENT_TOKEN (not in the environment, not in the EnvironmentFile)
# cannot enroll: `ENROLLMENT_TOKEN is required`, exit 2 (a configuration
# error systemd does not restart), nothing written, nothing enrolled.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 1.1 "Missing Enrollment Token" "ENROLLMENT_TOKEN is required"
start_controller ctl || exit 1

for role in connector tunneler; do
  run_agent "$role" "new-$role" ENROLLMENT_TOKEN=
  fm_seen "$AGENT_LOG"
  expect_status 2 "$role without a token exits non-zero"
  grep -qF 'msg="agent failed to start" error="ENROLLMENT_TOKEN is required' "$AGENT_LOG"
  check "$role: one error line says so" $?
  [ ! -e "$AGENT_STATE/key.pem" ] && [ ! -e "$AGENT_STATE/cert.pem" ]
  check "$role: no key or certificate written" $?
done

# The same from a YAML config without a token key (the EnvironmentFile case
# is the environment above).
printf 'controller_addr: %s\ntrust_domain: example.org\nnode_name: yaml1\n' "$CTL_ADDR" >"$E2E_TMP/agent.yaml"
run timeout 20 env -u ENROLLMENT_TOKEN STATE_DIR="$E2E_TMP/yaml1" HEALTH_LISTEN=127.0.0.1:0 \
  CONTROLLER_CA="$CTL_STATE/ca/ca-1.crt" "$ZTR_TEST_BIN/tunneler" --config "$E2E_TMP/agent.yaml"
expect_status 2 "config file without a token: exit non-zero"
expect_err_has "ENROLLMENT_TOKEN is required" "same symptom from a config file"

# Enrollment failed: the controller never saw an enrollment.
run ctl node list
[ -z "$RUN_OUT" ]; check "no node enrolled (node list empty)" $?
run ctl events
! grep -qF "kind=enrolled" <<<"$RUN_OUT"; check "no enrolled event" $?
stop_controller
fm_trim
fm_finish
