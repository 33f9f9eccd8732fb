#!/usr/bin/env bash
# Failure mode 3.3: a tunneler that is not on the controller-approved
# allowlist dials a connector anyway (it kept the connector list from when
# it was allowed, and cannot reach the controller). The connector rejects
# its mTLS session — `tunneler not allowed` in the connector's log, with the
# SPIFFE ID — the client gets nothing, and the connector counts it. An
# allowed tunneler keeps working through the same connector.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 3.3 "Tunneler Not Allowed" "tunneler not allowed"
dp_setup || exit 1
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "baseline: the allowed tunneler's request goes through"

# intruder is allowed just long enough to receive (and persist) the list.
ctl allow --tunneler intruder --resource web >/dev/null
start_agent tunneler intruder ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name intruder)" \
  FORWARDS="127.0.0.1:$(free_port)=web" SOCKS5_LISTEN=off
keep_agent INTRUDER
wait_for_line "$INTRUDER_LOG" 'msg="connector list received" version=' 10
check "intruder receives a connector list while allowed" $?
cp "$INTRUDER_STATE/connectors.json" "$E2E_TMP/intruder-connectors.json"
stop_agent "$INTRUDER_PID"
ctl deny --tunneler intruder --resource web >/dev/null
wait_for_json "$DC1_URL" tunnelers 1 5; check "the connector's allowlist is down to one tunneler" $?
run ctl allowlist
! grep -qF "tunneler=intruder" <<<"$RUN_OUT"; check "admin API: intruder not on the allowlist" $?

# It comes back with the stale list and the controller out of reach.
cp "$E2E_TMP/intruder-connectors.json" "$INTRUDER_STATE/connectors.json"
INTRUDER_FWD=$(free_port)
start_agent tunneler intruder FORWARDS="127.0.0.1:$INTRUDER_FWD=web" SOCKS5_LISTEN=off \
  CONTROLLER_ADDR=127.0.0.1:1
keep_agent INTRUDER
wait_for_line "$INTRUDER_LOG" 'msg="connector list loaded from disk"' 5
check "intruder uses its stale connector list" $?
health "$DC1_URL"; rejected0=$(json_value tunnelers_rejected)
run curl -s -m 10 "http://127.0.0.1:$INTRUDER_FWD/"
[ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
check "the intruder's client gets nothing (curl exit $RUN_STATUS)" $?
wait_for_line "$DC1_LOG" 'msg="tunneler not allowed" spiffe_id=spiffe://example.org/tunneler/intruder' 5
check "the connector logs tunneler not allowed with the SPIFFE ID" $?
fm_seen "$DC1_LOG"
wait_for_line "$INTRUDER_LOG" 'msg="tunneler not allowed"' 5
check "the tunneler is told why" $?
health "$DC1_URL"
[ "$(json_value tunnelers_rejected)" -gt "${rejected0:-0}" ]
ok=$?; check "the connector counts the rejection (tunnelers_rejected ${rejected0:-0} -> $(json_value tunnelers_rejected))" $ok
grep -qF 'msg="data session closed" connector=' "$INTRUDER_LOG" &&
  grep -F 'msg="data session closed"' "$INTRUDER_LOG" | grep -qF 'reason="tunneler not allowed"'
check "the intruder's session is closed by the connector (GOAWAY tunneler not allowed)" $?
grep -qF 'msg="connector marked down"' "$INTRUDER_LOG"; check "the intruder marks the connector down" $?

# The allowed tunneler is unaffected.
run curl -s -m 10 "http://127.0.0.1:$FWD/"
expect_out "hello from resource" "the allowed tunneler still gets through"
stop_agent "$INTRUDER_PID"; stop_agent "$LAPTOP_PID"; stop_agent "$DC1_PID"
stop_controller
fm_trim
fm_finish
