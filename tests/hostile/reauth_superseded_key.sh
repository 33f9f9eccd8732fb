#!/usr/bin/env bash
# Attack: re-authenticate with a key that is not the node's current one —
# a copy of its old key taken before it renewed (kept until the certificate
# has expired, when mTLS no longer works but a proof of possession might),
# or a key of the attacker's own. Re-authentication accepts only the key of
# the node's current certificate (or the previous one for the renewal
# grace, until the new one is used): the copy and the foreign key are
# refused (`permission denied`), a `security` event and a warn line name
# the node, the serial the key belonged to and the current serial, and the
# node keeps its certificate.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl SVID_TTL=8s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org --role tunneler)
R=(--controller "$CTL_ADDR" --trust-domain example.org --ca "$CA")
serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
stored_serial() { curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes" |
  grep -o "\"cert_serial\": *\"[0-9a-f]*\"" | head -1 | sed 's/.*"\([0-9a-f]*\)"$/\1/'; }

mkdir -p "$T/n"
run probe enroll "${R[@]}" --token "$(ctl token create --role tunneler --name t1)" \
  --role tunneler --name t1 --out "$T/n"
expect_status 0 "node t1 enrolls"
NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
SPIFFE=$(sed -n 's/^enrolled [0-9a-f]* \(.*\)$/\1/p' <<<"$RUN_OUT")
printf '{"node_id":"%s","spiffe_id":"%s"}\n' "$NODE" "$SPIFFE" >"$T/n/node.json"
cp -r "$T/n" "$T/stolen"                      # the attacker's copy
OLD=$(serial "$T/stolen/cert.pem")
# The node renews (fresh key) and uses its new certificate: the old one's
# grace ends there.
run probe session "${P[@]}" --dir "$T/n" --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "the node renews"
run probe session "${P[@]}" --dir "$T/n" --until welcome --duration 5000
expect_status 0 "the node's new certificate opens a session"
NEW=$(serial "$T/n/cert.pem")
[ "$(stored_serial)" = "$NEW" ]; check "the controller records the new certificate" $?
# The old certificate expires: the copy is useless for mTLS, not yet tried
# for re-authentication.
OLD_NA=$(date -u -d "$("$PKI" inspect "$T/stolen/cert.pem" | tr ' ' '\n' | sed -n 's/^not_after=//p')" +%s)
while [ "$(date +%s)" -le "$OLD_NA" ]; do sleep 0.2; done

# ---- the attack: the old key's proof of possession ----------------------------------------
run probe reauth "${R[@]}" --dir "$T/stolen" --out "$T/attacker"
[ "$RUN_STATUS" -ne 0 ]; check "the old key re-authenticates nothing (exit $RUN_STATUS)" $?
expect_err_has "permission denied" "the attacker is told: permission denied"
[ ! -f "$T/attacker/cert.pem" ]; check "no certificate for the attacker" $?
grep -F 'msg="re-authentication refused"' "$CTL_LOG" | grep -F "node=$NODE" |
  grep -qF "the key is not the node's current certificate key: serial=$OLD current_serial=$NEW"
check "controller warns: the key is not the current one, with both serials" $?
grep -F 'msg="re-authentication refused"' "$CTL_LOG" | grep -qF 'level=warn'; check "at warn" $?
run ctl events
expect_out_has "kind=security node=$NODE detail=\"re-authentication refused: permission denied (the key is not the node's current certificate key: serial=$OLD current_serial=$NEW)" \
  "a security event for the operator"
[ "$(stored_serial)" = "$NEW" ]; check "the node keeps its certificate" $?

# ---- a key of the attacker's own -------------------------------------------------------
"$PKI" ca init --trust-domain example.org --out "$T/own" >/dev/null
run probe reauth "${R[@]}" --dir "$T/stolen" --key "$T/own/ca.key"
[ "$RUN_STATUS" -ne 0 ]; check "a foreign key re-authenticates nothing" $?
grep -F 'msg="re-authentication refused"' "$CTL_LOG" | tail -1 | grep -qF 'serial=unknown'
check "refused as a key the node never had (serial=unknown)" $?
[ "$(stored_serial)" = "$NEW" ]; check "the node still keeps its certificate" $?

# The node itself is unaffected: its current key re-authenticates.
mkdir -p "$T/n2"
run probe reauth "${R[@]}" --dir "$T/n" --out "$T/n2"
expect_status 0 "the node's current key still proves it"
stop_controller
finish
