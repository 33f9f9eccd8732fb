#!/usr/bin/env bash
# Attack: a connector enrolls announcing an address it was never meant to
# have (127.0.0.9, say the address of another service tunnelers trust) next
# to its own. Enrollment used to certify every address the enroll message
# named, so its certificate became valid for whatever IP it claimed. An
# address is now certified only when the operator allowed it: on the token
# (`controller token create --role connector ... --address IP`) or on the
# node (`controller node set-addresses`). Each other announced address is
# left out of the certificate with a warn line and a `security` event; a
# token without addresses gives a certificate without IP SANs, and the
# controller says what to do.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
pki() { "$ZTR_TEST_BIN/ztr-pki" "$@"; }
ip_sans() { pki inspect "$1" | sed -n 's/^ *ip_sans=//p'; }
node_json() { curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes/$1"; }

# ---- the operator allows 127.0.0.1; the connector claims 127.0.0.9 too ---------------
run ctl token create --role connector --name dc1 --address 127.0.0.1
expect_status 0 "a connector token that allows 127.0.0.1"
tok="$RUN_OUT"
run ctl token list
expect_out_has "name=dc1 prefix=false" "the token is listed"
grep -F 'name=dc1 prefix=false' <<<"$RUN_OUT" | grep -qF 'addresses=127.0.0.1'
check "token list shows addresses=127.0.0.1" $?
start_agent connector dc1 ENROLLMENT_TOKEN="$tok" CONNECTOR_ADVERTISE=127.0.0.1,127.0.0.9
check "dc1 starts, announcing 127.0.0.1 and 127.0.0.9" $?
wait_for_state ONLINE 20; check "dc1 is ONLINE" $?
DC1_NODE="$(json_value node_id)"
[ "$(ip_sans "$AGENT_STATE/cert.pem")" = "127.0.0.1" ]
check "its certificate names only 127.0.0.1 (got ip_sans=$(ip_sans "$AGENT_STATE/cert.pem"))" $?
openssl x509 -in "$AGENT_STATE/cert.pem" -noout -ext subjectAltName >"$T/san" 2>&1
! grep -qF '127.0.0.9' "$T/san" && grep -qF 'IP Address:127.0.0.1' "$T/san"
check "openssl agrees: IP Address:127.0.0.1 and no 127.0.0.9" $?
run pki verify --bundle "$CA" --trust-domain example.org --role connector --ip 127.0.0.9 \
  "$AGENT_STATE/cert.pem"
[ "$RUN_STATUS" -ne 0 ]; check "a tunneler dialing 127.0.0.9 would refuse it (exit $RUN_STATUS)" $?
expect_err_has "x509: certificate is valid for 127.0.0.1, not 127.0.0.9" "with the usual text"
grep -F 'level=warn msg="enrollment address not allowed"' "$CTL_LOG" |
  grep -F "node=$DC1_NODE name=dc1" | grep -qF 'address=127.0.0.9'
check "the controller warns: enrollment address not allowed, node and address" $?
! grep -F 'msg="enrollment address not allowed"' "$CTL_LOG" | grep -qF 'address=127.0.0.1'
check "and not about the allowed 127.0.0.1" $?
run ctl events
grep -F "kind=security node=$DC1_NODE" <<<"$RUN_OUT" |
  grep -qF 'enrollment address not allowed: connector=dc1 address=127.0.0.9 (not certified)'
check "a security event names the node and the address" $?
node_json "$DC1_NODE" >"$T/dc1.json"
grep -qE '"allowed_addresses": *\["127\.0\.0\.1"\]' "$T/dc1.json"
check "the node is allowed what the token allowed: [\"127.0.0.1\"]" $?
stop_agent

# ---- a connector token without --address: no IP SANs ---------------------------------
mkdir -p "$T/dc2"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name dc2)" --role connector --name dc2 \
  --address 127.0.0.1 --out "$T/dc2"
expect_status 0 "dc2 enrolls with a token that allows no address"
DC2_NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
[ -n "$DC2_NODE" ] && [ -z "$(ip_sans "$T/dc2/cert.pem")" ]
check "its certificate has no IP SANs" $?
run pki verify --bundle "$CA" --trust-domain example.org --role connector --ip 127.0.0.1 \
  "$T/dc2/cert.pem"
expect_err_has "doesn't contain any IP SANs" "a tunneler dialing 127.0.0.1 would refuse it"
grep -F 'level=warn msg="connector certified without IP addresses"' "$CTL_LOG" |
  grep -F "node=$DC2_NODE" | grep -qF "controller node set-addresses $DC2_NODE --address IP"
check "the enrollment log says tunnelers cannot dial it until the operator sets addresses" $?
node_json "$DC2_NODE" >"$T/dc2.json"
grep -qE '"allowed_addresses": *\[\]' "$T/dc2.json"; check "dc2 is allowed no address" $?

# The operator allows 127.0.0.1 on the node: the next renewal certifies it.
run ctl node set-addresses "$DC2_NODE" --address 127.0.0.1
expect_status 0 "node set-addresses $DC2_NODE --address 127.0.0.1"
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role connector \
  --dir "$T/dc2" --data-listen 127.0.0.1:7446 --address 127.0.0.1 --address 127.0.0.9 \
  --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "dc2 renews"
[ "$(ip_sans "$T/dc2/cert.pem")" = "127.0.0.1" ]
check "the renewed certificate names 127.0.0.1 and not 127.0.0.9 (got $(ip_sans "$T/dc2/cert.pem"))" $?
node_json "$DC2_NODE" >"$T/dc2.json"
grep -qE '"allowed_addresses": *\["127\.0\.0\.1"\]' "$T/dc2.json"
check "the API shows allowed_addresses [\"127.0.0.1\"]" $?

# ---- the token's addresses are the operator's, checked --------------------------------
run ctl token create --role tunneler --name laptop --address 127.0.0.1
[ "$RUN_STATUS" -eq 1 ] && [ -z "$RUN_OUT" ]
check "a tunneler token with --address is refused (exit $RUN_STATUS)" $?
expect_err_has "addresses are for connector tokens only" "the refusal says why"
run ctl token create --role connector --name dc3 --address 127.0.0.1:7444
[ "$RUN_STATUS" -eq 1 ]; check "an address with a port is refused (exit $RUN_STATUS)" $?
expect_err_has 'address "127.0.0.1:7444" is not an IP address' "the refusal names it"

stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0, nothing leaked (got $STOP_STATUS)" $?
finish
