#!/usr/bin/env bash
# Attack: a copy of a node's old key and certificate, taken before the node
# renewed. The old certificate is still within its validity, so TLS accepts
# it; the controller used to check only that the node exists and is not
# revoked, so the copy opened control sessions and renewed with fresh keys
# indefinitely (nodes.cert_serial became the attacker's). Now only the
# node's current certificate (and the previous one for a short grace, until
# the new one is used) opens a session: the copy is refused with an error
# and a close, a warn line with node and serial, and a `security` event; two
# live sessions of one node with different keys raise an `alert` event. A
# renewal naming the old certificate as the one the node holds (`serial`)
# does not bring it back either.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org --role connector)
serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
stored_serial() { curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes" |
  grep -o "\"cert_serial\": *\"[0-9a-f]*\"" | head -1 | sed 's/.*"\([0-9a-f]*\)"$/\1/'; }

mkdir -p "$T/n"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name n1 --address 127.0.0.1)" --role connector --name n1 \
  --address 127.0.0.1:7444 --out "$T/n"
expect_status 0 "node n1 enrolls"
NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
cp -r "$T/n" "$T/stolen"                      # the attacker's copy
OLD=$(serial "$T/stolen/cert.pem")

# The node renews (fresh key), then uses its new certificate once.
run probe session "${P[@]}" --dir "$T/n" --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "the node renews"
NEW=$(serial "$T/n/cert.pem")
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ]; check "a new certificate ($OLD -> $NEW)" $?
run probe session "${P[@]}" --dir "$T/n" --until welcome --duration 5000
expect_status 0 "the node's new certificate opens a session"

# ---- the attack: a session with the old certificate ------------------------------
before=$(count_lines "$CTL_LOG" 'reason="superseded certificate"')
run probe session "${P[@]}" --dir "$T/stolen" --until welcome --duration 5000
[ "$RUN_STATUS" -ne 0 ]; check "the old certificate gets no session (exit $RUN_STATUS)" $?
expect_err_has "certificate superseded" "the attacker is told: certificate superseded"
! grep -qF '"type":"welcome"' <<<"$RUN_OUT"; check "no welcome for the old certificate" $?
grep -F 'msg="control session refused"' "$CTL_LOG" | grep -F "node=$NODE serial=$OLD " |
  grep -qF 'reason="superseded certificate"'
check "controller warns: control session refused, node and serial, superseded certificate" $?
grep -F 'msg="control session refused"' "$CTL_LOG" | grep -qF 'level=warn'
check "at warn level" $?
run ctl events
expect_out_has "kind=security node=$NODE detail=\"control session refused: superseded certificate serial=$OLD current_serial=$NEW" \
  "a security event names the node and both serials"

# ---- and a renewal with it ----------------------------------------------------------
run probe session "${P[@]}" --dir "$T/stolen" --renew --until renewed --duration 5000
! grep -qF '"type":"renewed"' <<<"$RUN_OUT"; check "the old certificate cannot renew" $?
[ "$(serial "$T/stolen/cert.pem")" = "$OLD" ]; check "the attacker's copy got nothing new" $?
[ "$(stored_serial)" = "$NEW" ]; check "nodes.cert_serial is still the node's ($NEW)" $?
[ "$(count_lines "$CTL_LOG" 'reason="superseded certificate"')" -ge $((before + 2)) ]
check "each attempt logged" $?

# ---- the grace, and two sessions with different keys ------------------------------------
# The previous certificate is admitted until the new one is used: a renewal
# whose reply was lost must not lock the node out. A session with the new
# one ends that grace and closes the sessions of the previous one.
cp -r "$T/n" "$T/previous"
run probe session "${P[@]}" --dir "$T/n" --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "the node renews again"
NEWER=$(serial "$T/n/cert.pem")
probe session "${P[@]}" --dir "$T/previous" --interval 100 --duration 8000 \
  >"$T/previous.out" 2>"$T/previous.err" &
PREV_PID=$!; E2E_PIDS+=("$PREV_PID")
wait_for_line "$T/previous.out" '"type":"welcome"' 5
check "within its grace the previous certificate still opens a session" $?
grep -qF 'msg="control session with the previous certificate"' "$CTL_LOG"
check "controller logs the session with the previous certificate" $?
run probe session "${P[@]}" --dir "$T/n" --until welcome --duration 5000
expect_status 0 "the current certificate opens a session"
wait_for_line "$CTL_LOG" 'msg="two control sessions of one node with different keys"' 5
check "controller warns: two control sessions of one node with different keys" $?
run ctl events
expect_out_has "kind=alert node=$NODE detail=\"two live control sessions with different keys" "an alert event"
wait "$PREV_PID"
grep -qF 'certificate superseded' "$T/previous.err"
check "the previous certificate's live session is closed once the new one is used" $?
run probe session "${P[@]}" --dir "$T/previous" --until welcome --duration 5000
[ "$RUN_STATUS" -ne 0 ]; check "and it is refused from then on (exit $RUN_STATUS)" $?
[ "$(stored_serial)" = "$NEWER" ]; check "the node's serial is its newest ($NEWER)" $?
# ---- a renewal naming the stolen certificate as the one held ---------------------------
# A renewal may name the certificate the agent holds (`serial`: one whose
# renewals it could not keep, still within its grace). A node n2 whose old
# certificate was copied renews once and uses the new one; then its own
# session names the old serial: that changes nothing (an ordinary renewal
# of the current certificate), and the copy stays refused.
mkdir -p "$T/n2"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name n2 --address 127.0.0.1)" --role connector --name n2 \
  --address 127.0.0.1:7445 --out "$T/n2"
expect_status 0 "node n2 enrolls"
N2=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
cp -r "$T/n2" "$T/stolen2"
OLD2=$(serial "$T/stolen2/cert.pem")
run probe session "${P[@]}" --dir "$T/n2" --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "n2 renews"
NEW2=$(serial "$T/n2/cert.pem")
run probe session "${P[@]}" --dir "$T/n2" --until welcome --duration 5000
expect_status 0 "n2 uses its new certificate (the old one's grace ends)"
run probe session "${P[@]}" --dir "$T/n2" --renew --renew-serial "$OLD2" --until renewed --duration 5000
expect_out_has '"type":"renewed"' "a renewal naming the old serial is an ordinary renewal"
NEWER2=$(serial "$T/n2/cert.pem")
node2() { curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes" |
  python3 -c 'import json,sys; n=[n for n in json.load(sys.stdin)["nodes"] if n["id"]==sys.argv[1]][0]; print(n["cert_serial"], n["previous_cert_serial"])' "$N2"; }
[ "$(node2)" = "$NEWER2 $NEW2" ]
check "the certificate kept through the grace is the one it renewed from ($NEW2), not the named $OLD2" $?
run probe session "${P[@]}" --dir "$T/stolen2" --until welcome --duration 5000
! grep -qF '"type":"welcome"' <<<"$RUN_OUT"; check "the copy of the old certificate is still refused" $?
expect_err_has "certificate superseded" "it is told: certificate superseded"

kill -0 "$CTL_PID" 2>/dev/null; check "controller still running" $?
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0, nothing leaked (got $STOP_STATUS)" $?
finish
