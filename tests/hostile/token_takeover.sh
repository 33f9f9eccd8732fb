#!/usr/bin/env bash
# Attack: a fleet token (a name prefix, several uses) re-enrolls a node
# that already exists and is alive, under its name: it used to get a
# certificate for that identity (and the node's grants), while the real
# node's certificate stayed valid too. Re-enrolling a name whose node still
# has a valid certificate now needs a token created with --replace: without
# one the enrollment is refused (`node <name> already enrolled`, the agent's
# usual refusal, exit 4) with a `denied` event; with one the node keeps its
# id, and the certificate it had is superseded: its sessions are closed and
# it opens no new ones.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org --role connector)
stored_serial() { curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes" |
  grep -o "\"cert_serial\": *\"[0-9a-f]*\"" | head -1 | sed 's/.*"\([0-9a-f]*\)"$/\1/'; }

fleet=$(ctl token create --role connector --name dc1- --address 127.0.0.1 --prefix --uses 5)
mkdir -p "$T/victim"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" --token "$fleet" \
  --role connector --name dc1-a --address 127.0.0.1:7444 --out "$T/victim"
expect_status 0 "the real dc1-a enrolls with the fleet token"
NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
SERIAL=$(stored_serial)

# ---- the attack: the same token, the same name, another host ------------------------
start_agent connector dc1-a ENROLLMENT_TOKEN="$fleet"
if [ "$AGENT_STATUS" -eq 255 ]; then wait_agent_exit 10; fi
[ "$AGENT_STATUS" -eq 4 ]; check "the second enrollment of dc1-a is refused: exit 4 (got $AGENT_STATUS)" $?
grep -qF 'level=error msg="node dc1-a already enrolled"' "$AGENT_LOG"
check "the agent says why: node dc1-a already enrolled" $?
grep -F 'msg="enrollment denied"' "$CTL_LOG" | grep -qF 'reason="node dc1-a already enrolled"'
check "controller logs: enrollment denied, node dc1-a already enrolled" $?
run ctl events
expect_out_has 'kind=denied node="" detail="enroll role=connector name=dc1-a' "a denied event"
grep -F 'kind=denied' <<<"$RUN_OUT" | grep -qF 'node dc1-a already enrolled'
check "the event names the node taken" $?
grep -F 'kind=denied' <<<"$RUN_OUT" | grep -qF -- '--replace'
check "the event says what an operator would need (--replace)" $?
run ctl token list
expect_out_has "name=dc1- prefix=true uses_left=4" "the refused attempt used nothing of the token"
[ "$(stored_serial)" = "$SERIAL" ]; check "dc1-a keeps its certificate serial" $?
run probe session "${P[@]}" --dir "$T/victim" --until welcome --duration 5000
expect_status 0 "the real dc1-a still opens sessions"
# Another name under the prefix is what the fleet token is for.
start_agent connector dc1-b ENROLLMENT_TOKEN="$fleet"
check "a new name under the prefix still enrolls" $?
stop_agent

# ---- an operator replaces dc1-a on purpose ------------------------------------------
run ctl token create --role connector --name dc1-a --address 127.0.0.1 --replace
expect_status 0 "token create --replace"
replace_tok="$RUN_OUT"
run ctl token list
expect_out_has "name=dc1-a prefix=false uses_left=1" "the replacing token is listed"
grep -F 'name=dc1-a prefix=false' <<<"$RUN_OUT" | grep -qF 'replace=true'
check "token list shows replace=true" $?
probe session "${P[@]}" --dir "$T/victim" --interval 100 --duration 10000 \
  >"$T/victim.out" 2>"$T/victim.err" &
VICTIM_PID=$!; E2E_PIDS+=("$VICTIM_PID")
wait_for_line "$T/victim.out" '"type":"welcome"' 5; check "the old dc1-a has a live session" $?
start_agent connector dc1-a ENROLLMENT_TOKEN="$replace_tok"
check "the replacing enrollment succeeds" $?
wait_for_state ONLINE 10; check "the new dc1-a is ONLINE" $?
[ "$(json_value node_id)" = "$NODE" ]; check "under the same node id" $?
wait "$VICTIM_PID"
grep -qF 'certificate superseded' "$T/victim.err"
check "the replaced certificate's live session is closed" $?
run probe session "${P[@]}" --dir "$T/victim" --until welcome --duration 5000
[ "$RUN_STATUS" -ne 0 ]; check "and it opens no new one (exit $RUN_STATUS)" $?
run ctl events
expect_out_has "kind=enrolled node=$NODE detail=\"replaced connector dc1-a with token" "an enrolled event says replaced"
grep -F "kind=enrolled node=$NODE" <<<"$RUN_OUT" | grep -qF "serial $SERIAL superseded by"
check "and names the superseded serial" $?
expect_out_has "kind=security node=$NODE" "closing the replaced session is a security event"
stop_agent
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0, nothing leaked (got $STOP_STATUS)" $?
finish
