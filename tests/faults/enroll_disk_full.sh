#!/usr/bin/env bash
# A full STATE_DIR at a fresh agent's enrollment. The agent used to ask the
# controller first and write afterwards: the controller consumed the
# single-use token and recorded the node, the agent could not keep the
# answer (`cannot save the enrolled identity ... no space left on device`),
# and a restart made a new key that the used-up token no longer enrolled.
# Now the enrollment key is written (0600) before the controller is asked:
# the first durable write fails, the agent exits with a clear error before
# the token is spent, and the SAME token enrolls it once the disk frees (one
# node, ONLINE). A disk that fills up after the answer (the key kept, the
# certificate not) is retried with the same key: the controller gives the
# same node back.
. "$(dirname "$0")/fault_lib.sh"
FAULT_RUNS=0
T="$E2E_TMP"
start_controller ctl || exit 1
tok=$(ctl token create --role connector --name dc1 --address 127.0.0.1)
STATE="$T/agent-dc1"
FULL="$T/disk-full"

# ---- the disk is full from the first write ------------------------------------------
touch "$FULL"
fault_env open enospc "$STATE/" 1 0 "$FULL"
start_agent connector dc1 "${FAULT_ENV[@]}" ENROLLMENT_TOKEN="$tok"
[ "$AGENT_STATUS" = 255 ] && wait_agent_exit 15
[ "$AGENT_STATUS" != 0 ] && [ "$AGENT_STATUS" != 255 ]
check "the agent exits (status $AGENT_STATUS) when STATE_DIR is full" $?
[ "$(fault_count)" -ge 1 ]; check "the fault hit a write in STATE_DIR ($(fault_count))" $?
grep -q 'no space left on device' "$AGENT_LOG"
check "its log says: no space left on device" $?
grep -q 'the token was not used' "$AGENT_LOG"
check "its log says the token was not used" $?
run ctl token list
expect_out_has "name=dc1 prefix=false uses_left=1" "the token is still unused"
run ctl node list
! grep -q "name=dc1 " <<<"$RUN_OUT"; check "no node was recorded" $?
! ls "$STATE"/*.tmp.* >/dev/null 2>&1
check "no temporary file is left behind" $?

# ---- the disk frees: the same token enrolls ------------------------------------------
rm -f "$FULL"
start_agent connector dc1 ENROLLMENT_TOKEN="$tok"
check "the agent starts again with the same token" $?
FIRST_LOG="$AGENT_LOG"
wait_for_state ONLINE 20; check "it enrolls and comes ONLINE" $?
run ctl node list
[ "$(grep -c 'name=dc1 role=connector status=ONLINE' <<<"$RUN_OUT")" = 1 ]
check "one node dc1, ONLINE" $?
[ ! -e "$STATE/enroll-key.pem" ]; check "the pending enrollment key is gone (it is key.pem)" $?
expect_file_mode "$STATE/key.pem" 600 "key.pem is private"
stop_agent

# ---- the disk fills after the answer: the same key asks again ---------------------------
# bundle.pem is the first file the answer writes; the key was kept before.
tok2=$(ctl token create --role connector --name dc2 --address 127.0.0.1)
STATE2="$T/agent-dc2"
touch "$FULL"
fault_env open enospc "bundle.pem" 1 0 "$FULL"
start_agent connector dc2 "${FAULT_ENV[@]}" ENROLLMENT_TOKEN="$tok2"
[ "$AGENT_STATUS" = 255 ] && wait_agent_exit 20
[ "$AGENT_STATUS" != 0 ] && [ "$AGENT_STATUS" != 255 ]
check "an agent that cannot keep the answer exits (status $AGENT_STATUS)" $?
grep -q 'msg="cannot save the enrolled identity"' "$AGENT_LOG"
check "it says: cannot save the enrolled identity" $?
grep -q 'the same token enrolls it again' "$AGENT_LOG"
check "it says the same token enrolls it again" $?
[ -s "$STATE2/enroll-key.pem" ]; check "its enrollment key is kept" $?
rm -f "$FULL"
start_agent connector dc2 ENROLLMENT_TOKEN="$tok2"
check "restarted with the same token" $?
wait_for_state ONLINE 20; check "the same token brings it ONLINE" $?
grep -q 'msg="node enrollment retried"' "$CTL_LOG"
check "the controller answered a retry (same token, same key)" $?
run ctl node list
[ "$(grep -c 'name=dc2 role=connector status=ONLINE' <<<"$RUN_OUT")" = 1 ]
check "one node dc2, ONLINE" $?
stop_agent
finish
