#!/usr/bin/env bash
# Attack: replay a node's proof of possession. Re-authentication after an
# expiry answers a controller challenge with the expired key's signature;
# whoever captured one `reauth` message (a debugging proxy, a log, a core
# dump of the agent) sends it again on a session of their own, hoping to be
# issued the node's next certificate. The challenge is random per session
# and used once, and the signature covers it: the replay is refused
# (`permission denied`, the controller logs `proof of possession does not
# verify`), nothing is issued, and a `reauth` without a challenge of its
# own session is refused too (`no challenge outstanding on this session`).
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl SVID_TTL=3s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
issued() { run ctl events --limit 1000; grep -c "kind=reauthenticated node=$NODE" <<<"$RUN_OUT"; }

mkdir -p "$T/n" "$T/renewed"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role tunneler --name t1)" --role tunneler --name t1 --out "$T/n"
expect_status 0 "node t1 enrolls (3 s certificate)"
NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
SPIFFE=$(sed -n 's/^enrolled [0-9a-f]* \(.*\)$/\1/p' <<<"$RUN_OUT")
printf '{"node_id":"%s","spiffe_id":"%s"}\n' "$NODE" "$SPIFFE" >"$T/n/node.json"
NOT_AFTER=$(date -u -d "$("$PKI" inspect "$T/n/cert.pem" | tr ' ' '\n' | sed -n 's/^not_after=//p')" +%s)
while [ "$(date +%s)" -le "$NOT_AFTER" ]; do sleep 0.2; done

# The node re-authenticates; the attacker captures its message.
run probe reauth --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" --dir "$T/n" \
  --save "$T/captured.json" --out "$T/renewed"
expect_status 0 "the expired node re-authenticates by proof of possession"
expect_out_has "reauthenticated $NODE $SPIFFE" "same node id"
[ -s "$T/captured.json" ]; check "(the attacker holds its signed reauth message)" $?
SERIAL=$(serial "$T/renewed/cert.pem")
[ "$(issued)" -eq 1 ]; check "one certificate issued" $?

# ---- the attack: the captured proof on another session --------------------------------
before=$(count_lines "$CTL_LOG" 'msg="re-authentication refused"')
run probe reauth --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" --dir "$T/n" \
  --replay "$T/captured.json" --out "$T/attacker"
[ "$RUN_STATUS" -ne 0 ]; check "the replay gets nothing (exit $RUN_STATUS)" $?
expect_err_has "permission denied" "the attacker is told: permission denied"
! grep -qF '"type":"reauthenticated"' <<<"$RUN_OUT"; check "no certificate in the answer" $?
[ ! -f "$T/attacker/cert.pem" ]; check "nothing written for the attacker" $?
grep -F 'msg="re-authentication refused"' "$CTL_LOG" | tail -1 |
  grep -qF 'detail="proof of possession does not verify"'
check "controller: re-authentication refused, proof of possession does not verify" $?
[ "$(count_lines "$CTL_LOG" 'msg="re-authentication refused"')" -eq $((before + 1)) ]
check "one refusal logged" $?
[ "$(issued)" -eq 1 ]; check "still one certificate issued" $?
run curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes"
expect_out_has "\"cert_serial\":\"$SERIAL\"" "the node's certificate is the one its owner got"

# ---- a reauth with no challenge of its own session --------------------------------------
run probe raw --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --send "$(cat "$T/captured.json")"
expect_out_has '"code":"bad_request"' "a reauth without reauth_begin: bad_request"
expect_out_has 'no challenge outstanding on this session' "no challenge outstanding on this session"
[ "$(issued)" -eq 1 ]; check "and nothing issued" $?
run curl -s "$HEALTH_URL/metrics"
expect_out_has "ztr_controller_reauth_total 1" "/metrics: one re-authentication"
expect_out_has "ztr_controller_reauth_denied_total 2" "/metrics: two refused"
stop_controller
finish
