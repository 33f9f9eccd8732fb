#!/usr/bin/env bash
# Attack: a federated peer lies about what it granted our tunnelers. Its
# fed_grants message names, besides one honest grant, connectors of OUR
# trust domain (to turn our tunneler's traffic to our own connectors),
# connectors of a third trust domain, a tunneler of another trust domain, a
# host name instead of an IP, and a resource name carrying '@'. The
# controller keeps only what names one of our tunnelers and the peer's own
# connectors by IP, logs how many entries it dropped, and our tunneler's
# list holds the honest connector only.
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/../e2e/fed_lib.sh"
T="$E2E_TMP"
fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 || exit 1
on A federation propose --name b --ttl 1h >"$T/token" || exit 1
foreign_cert "$T/b" b.example; check "the peer's own CA and controller certificate" $?
run fed_peer accept --addr "$A_FED" --token-file "$T/token" --trust-domain b.example \
  --bundle "$T/b/ca.pem"
expect_status 0 "the peer accepts with its CA as bundle"
use A
start_agent tunneler laptop TRUST_DOMAIN=a.example \
  ENROLLMENT_TOKEN="$(on A token create --role tunneler --name laptop)" || exit 1
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10

cat >"$T/grants.json" <<'JSON'
{"type": "fed_grants", "version": 1, "grants": [
 {"id": "g1", "tunneler": "spiffe://a.example/tunneler/laptop", "resource": "pg",
  "connectors": [
   {"id": "honest", "spiffe_id": "spiffe://b.example/connector/bx", "address": "127.0.0.1:9"},
   {"id": "ours", "spiffe_id": "spiffe://a.example/connector/dc1", "address": "127.0.0.1:7"},
   {"id": "third", "spiffe_id": "spiffe://c.example/connector/cx", "address": "127.0.0.1:8"},
   {"id": "named", "spiffe_id": "spiffe://b.example/connector/by", "address": "evil.example.com:443"}]},
 {"id": "g2", "tunneler": "spiffe://c.example/tunneler/laptop", "resource": "pg",
  "connectors": [{"id": "c2", "spiffe_id": "spiffe://b.example/connector/bx", "address": "127.0.0.1:9"}]},
 {"id": "g3", "tunneler": "spiffe://a.example/tunneler/laptop", "resource": "pg@a.example",
  "connectors": [{"id": "c3", "spiffe_id": "spiffe://b.example/connector/bx", "address": "127.0.0.1:9"}]}
]}
JSON
run fed_peer link --addr "$A_FED" --ca "$A_STATE/ca/ca-1.crt" --cert "$T/b/leaf.pem" \
  --key "$T/b/leaf.key" --send "$T/grants.json" --hold 2
expect_status 0 "the peer links and sends its grants"
wait_for_line "$A_LOG" 'msg="federation grants entries dropped" peer=b dropped=5' 5
check "A drops the 5 entries that are not the peer's connectors for our tunnelers" $?
wait_list_with "$LAPTOP_LOG" 1 10; check "laptop is handed one connector" $?
list="$(cat "$LAPTOP_STATE/connectors.json")"
grep -qF '"spiffe_id":"spiffe://b.example/connector/bx"' <<<"$list"
check "the honest connector is there, as b.example's" $?
grep -qF '"resources":["pg@b.example"]' <<<"$list"
check "its resource is named pg@b.example" $?
! grep -qF 'a.example/connector' <<<"$list" && ! grep -qF 'c.example' <<<"$list" &&
  ! grep -qF 'evil.example.com' <<<"$list"
check "no connector of ours, of a third domain, or by host name" $?
stop_agent "$LAPTOP_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "laptop stops cleanly" $?
fed_stop_all
finish
