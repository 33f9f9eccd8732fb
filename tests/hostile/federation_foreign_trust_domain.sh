#!/usr/bin/env bash
# Attack: a peer controller presents a certificate for another peer's trust
# domain. A federates with b.example and c.example; c.example's operator
# (or whoever holds its CA key) signs spiffe://b.example/controller and
# links to A with it, to speak for b. A verifies a link's certificate
# against the bundle stored for the trust domain it names — b's, which does
# not hold c's CA — so the handshake is refused (`x509: certificate signed
# by unknown authority`), logged and counted; b's own link stays up. A
# certificate of c's CA for an unknown trust domain, and one for A's own
# trust domain, are refused the same way.
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/../e2e/fed_lib.sh"
T="$E2E_TMP"
fed_pair || exit 1
fed_start C c.example || exit 1
on A federation propose --name c >"$T/token-c"
on C federation accept --url "$A_FED" --name a --token-file "$T/token-c" >/dev/null
wait_peer_state A b active 10; check "b is active" $?
wait_peer_state A c active 10; check "c is active" $?
CA_CERT="$C_STATE/ca/ca-1.crt" CA_KEY="$C_STATE/ca/ca-1.key"

for td in b.example evil.example a.example; do
  foreign_cert "$T/forged-$td" "$td" "$CA_CERT" "$CA_KEY"
  check "c's CA signs a controller certificate for $td" $?
  before=$(grep -c 'msg="federation handshake refused"' "$A_LOG")
  run fed_peer link --addr "$A_FED" --ca "$A_STATE/ca/ca-1.crt" \
    --cert "$T/forged-$td/leaf.pem" --key "$T/forged-$td/leaf.key"
  expect_status 1 "a link as $td with c's CA is refused"
  for _ in $(seq 1 50); do
    [ "$(grep -c 'msg="federation handshake refused"' "$A_LOG")" -gt "$before" ] && break
    sleep 0.1
  done
  [ "$(grep -c 'msg="federation handshake refused"' "$A_LOG")" -gt "$before" ]
  check "A logs the refusal of $td" $?
done
grep -q 'msg="federation handshake refused" source=127.0.0.1:[0-9]* reason="x509: certificate signed by unknown authority"' "$A_LOG"
check "b.example signed by c's CA: unknown authority for b's bundle" $?
grep -q 'reason="unknown federation peer: trust domain evil.example"' "$A_LOG"
check "a trust domain that is no peer's is named as such" $?
grep -q 'reason="unknown federation peer: trust domain a.example"' "$A_LOG"
check "A's own trust domain is never a peer's" $?
run curl -s "$A_HEALTH/metrics"
grep -q '^ztr_federation_links_refused_total [3-9]' <<<"$RUN_OUT"
check "ztr_federation_links_refused_total counts them" $?
[ "$(peer_state A b)" = active ]; check "b's own link is untouched" $?
! grep -q 'msg="federation link up" peer=b spiffe_id=spiffe://b.example/controller remote=127.0.0.1:[0-9]* direction=inbound' <(grep -v "$(grep -m1 'msg="federation link up" peer=b' "$A_LOG")" "$A_LOG")
check "no second link was ever admitted for b" $?
fed_stop_all
finish
