#!/usr/bin/env bash
# Attack: answer for a connector. `controller explain --connector dc2` asks
# dc2 over its control stream what it would do; whoever holds another
# enrolled identity (a tunneler here) and has learnt the request's id sends
# an `explain_answer` that says "allow", hoping the operator reads it as
# dc2's. An answer is taken only from the session the request went to,
# only for the request outstanding on it: the forged one is dropped
# (`explain answer refused`, counted on /metrics), the operator reads
# "connector did not answer within 2s". An answer nobody asked for is
# dropped the same way, a session without a client certificate may not
# send one at all, and the route wants the admin token like every other.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org)
enroll() { # ROLE NAME [--address IP]
  mkdir -p "$T/$2"
  probe enroll "${P[@]}" --ca "$CA" --role "$1" --name "$2" \
    --token "$(ctl token create --role "$1" --name "$2" "${@:3}")" "${@:3}" --out "$T/$2" >/dev/null
}
enroll connector dc2 --address 127.0.0.1; check "connector dc2 enrolls" $?
enroll tunneler mallory; check "tunneler mallory enrolls" $?
ctl resource add api --connector dc2 >/dev/null
ctl allow --tunneler mallory --resource api >/dev/null

# dc2 is live but slow: it never answers explain requests.
probe session "${P[@]}" --dir "$T/dc2" --role connector --data-listen "127.0.0.1:$(free_port)" \
  --address 127.0.0.1 --resource api --interval 200 --duration 20000 >"$T/dc2.out" 2>&1 &
DC2_PID=$!; E2E_PIDS+=("$DC2_PID")
wait_for_line "$T/dc2.out" '"type":"welcome"' 10; check "dc2 is ONLINE" $?

ctl explain --tunneler mallory --resource api --connector dc2 >"$T/explain.out" 2>&1 &
EXPLAIN_PID=$!
wait_for_line "$T/dc2.out" '"type":"explain_request"' 5; check "dc2 is asked" $?
ID=$(grep -F '"type":"explain_request"' "$T/dc2.out" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
FORGED='{"type":"explain_answer","id":"'"$ID"'","allowlist_version":99,"stale":false,"on_allowlist":true,"permitted":true,"serves":true,"target":"10.0.0.1:1","verdict":"allow","reason":""}'
run probe session "${P[@]}" --dir "$T/mallory" --role tunneler --interval 200 --duration 1000 \
  --send "$FORGED"
wait "$EXPLAIN_PID"
check "the operator's explain completes" $?
grep -qF 'step=connector_answer ok=false detail="dc2: connector did not answer within 2s"' "$T/explain.out"
check "the forged answer is not taken as dc2's" $?
! grep -qF '10.0.0.1:1' "$T/explain.out"
check "nothing of the forged answer reaches the operator" $?
wait_for_line "$CTL_LOG" 'msg="explain answer refused"' 5
check "the controller logs the refused answer" $?
grep -F 'msg="explain answer refused"' "$CTL_LOG" | grep -qF 'reason="no explain request outstanding on this session"'
check "refused: nothing was asked of that session" $?

# dc2 itself answering after the time-out: nothing is outstanding any more.
run probe session "${P[@]}" --dir "$T/dc2" --role connector --data-listen "127.0.0.1:$(free_port)" \
  --address 127.0.0.1 --resource api --interval 200 --duration 1000 --send "$FORGED"
metric_at_least "$HEALTH_URL" ztr_controller_explain_answers_refused_total 2
check "every unsolicited answer is counted on /metrics" $?

# Without a client certificate, an answer is not even read as one.
run probe raw "${P[@]}" --ca "$CA" --send "$FORGED"
expect_out_has "may only enroll or re-authenticate" "an unauthenticated session may not answer"

run curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/api/admin/explain?tunneler=mallory&resource=api"
expect_out "401" "explain wants the admin token"
run curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" \
  "$ADMIN_URL/api/admin/explain?tunneler=mallory&resource=api&connector=dc2"
expect_out "401" "a wrong token cannot make the controller ask a connector"
kill "$DC2_PID" 2>/dev/null
finish
