#!/usr/bin/env bash
# Failure mode 7.7 (seed 003): a peer's tunneler is refused by A's connector
# with `grant scope mismatch`: its source IP is outside the grant's
# source CIDRs, the grant expired, or it was revoked (or never given). The
# connector logs the tunneler, the resource and which of these it was, and
# counts it (ztr_grant_scope_mismatch_total); the tunneler's client sees
# the stream refused. Fix on A: `controller federation grants --peer b`
# shows the grant's CIDRs, expiry and state; re-grant with the caller's
# actual source or a new expiry (`controller federation grant ...`).
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../fed_lib.sh"
fm_mode 7.7 "Grant rejected with grant scope mismatch" "grant scope mismatch"
fed_pair || exit 1
wait_peer_state A b active 10; check "b is active" $?
fed_dataplane || exit 1
LAPTOP_ID=spiffe://b.example/tunneler/laptop

# 1. Source IP outside the grant's CIDRs.
run on A federation grant --peer b --resource pg --tunneler "$LAPTOP_ID" --source-cidr 192.0.2.0/24
expect_status 0 "pg granted from 192.0.2.0/24 only"
wait_list_with "$LAPTOP_LOG" 1 10; check "laptop is handed A's connector" $?
run tcp_peer check "127.0.0.1:$FWD" 1 1K --timeout 5
expect_status 1 "the stream from 127.0.0.1 is refused"
wait_for_line "$DC1_LOG" 'msg="grant scope mismatch"' 5
fm_seen "$DC1_LOG"
grep -F 'msg="grant scope mismatch"' "$DC1_LOG" | grep -q 'reason="source 127.0.0.1 is outside grant'
check "the reason: source outside the CIDRs" $?
grep -q 'refused the stream: grant scope mismatch' "$LAPTOP_LOG"
check "the tunneler is told grant scope mismatch" $?
metric_at_least "$DC1_URL" ztr_grant_scope_mismatch_total 1; check "counted" $?
run on A federation grants --peer b
expect_out_has "source_cidrs=192.0.2.0/24" "the operator sees the grant's CIDRs"

# 2. Expired.
run on A federation grant --peer b --resource pg --tunneler "$LAPTOP_ID" --expires 2s
expect_status 0 "the fix for 1: re-granted from anywhere, here for 2 s"
wait_through "127.0.0.1:$FWD" 30; check "the stream goes through now" $?
sleep 2.5
run tcp_peer check "127.0.0.1:$FWD" 1 1K --timeout 5
expect_status 1 "refused once the grant expired"
run on A federation grants --peer b
expect_out_has "state=expired" "the operator sees it expired"

# 3. Revoked: the tunneler's session ends with the same text.
run on A federation grant --peer b --resource pg --tunneler "$LAPTOP_ID"
GRANT_ID="$(sed -n 's/.*grant added id=\([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")"
wait_through "127.0.0.1:$FWD" 30; check "granted again without limits, it works" $?
dc1_before=$(wc -l <"$DC1_LOG"); laptop_before=$(wc -l <"$LAPTOP_LOG")
on A federation revoke-grant "$GRANT_ID" >/dev/null
# Both ends learn of it, each from its own controller: the connector from A
# (the grant is gone), the tunneler from B (A no longer admits it, so B
# withdraws A's trust domain). Whichever applies it first ends the session
# and says why.
ended=1
for ((i = 0; i < 100; i++)); do
  if tail -n +"$((dc1_before + 1))" "$DC1_LOG" |
       grep -qF 'reason="no live grant for this tunneler: revoked, expired or never given"' ||
     tail -n +"$((laptop_before + 1))" "$LAPTOP_LOG" | grep -F 'msg="peer no longer trusted"' |
       grep -qF 'a.example is not a trust domain admitted here'; then
    ended=0; break
  fi
  sleep 0.05
done
check "revoked: the session ends with the reason" $ended
stop_agent "$LAPTOP_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "laptop stops cleanly" $?
stop_agent "$DC1_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "dc1 stops cleanly" $?
fed_stop_all
fm_trim
fm_finish
