#!/usr/bin/env bash
# Attack: tunnelers of a federated trust domain reach for more than their
# grant, from machines they control. A (a.example) granted b.example's
# laptop one resource, pg. Each attacker writes its own connector list
# (STATE_DIR/connectors.json, the fail-static copy) naming A's connector
# and starts with its controller out of the way:
#   - mallory, a b.example tunneler with no grant: its valid b.example
#     certificate passes the handshake (b's bundle is on dc1 for laptop's
#     sake), and the session ends with `grant scope mismatch`;
#   - laptop asks for `secret`, a resource A allows its own (a.example)
#     tunneler named laptop: a grant is per SPIFFE ID, never per name, so
#     the stream is refused with `grant scope mismatch`;
#   - eve, a tunneler of c.example, a trust domain A does not federate
#     with: refused at the handshake, its trust domain has no bundle on dc1.
# Each refusal is logged on the connector and counted, and laptop's pg
# keeps working throughout.
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/../e2e/fed_lib.sh"
T="$E2E_TMP"
fed_pair || exit 1
wait_peer_state A b active 10; check "b is active" $?
fed_dataplane || exit 1
start_peer echo || exit 1; SECRET_PORT=$PEER_PORT
on A resource add secret --connector dc1 >/dev/null
on A allow --tunneler laptop --resource secret >/dev/null   # a.example's own laptop
stop_agent "$DC1_PID"
use A
start_agent connector dc1 TRUST_DOMAIN=a.example \
  RESOURCES="pg=127.0.0.1:$ECHO_PORT,secret=127.0.0.1:$SECRET_PORT" || exit 1
keep_agent DC1
on A federation grant --peer b --resource pg --tunneler spiffe://b.example/tunneler/laptop >/dev/null
wait_list_with "$LAPTOP_LOG" 1 10; check "laptop is handed dc1 for pg" $?
wait_through "127.0.0.1:$FWD" 50; check "laptop reaches pg (its grant)" $?
LIST="$LAPTOP_STATE/connectors.json"

# mallory: enrolled in b.example, granted nothing.
use B
start_agent tunneler mallory TRUST_DOMAIN=b.example \
  ENROLLMENT_TOKEN="$(on B token create --role tunneler --name mallory)" || exit 1
wait_for_line "$AGENT_LOG" 'msg="connector list received"' 10
grep -q 'connectors=0 ' "$AGENT_LOG"; check "B hands mallory no connector" $?
stop_agent
cp "$LIST" "$AGENT_STATE/connectors.json"
M_FWD=$(free_port)
start_agent tunneler mallory TRUST_DOMAIN=b.example CONTROLLER_ADDR=127.0.0.1:1 \
  FORWARDS="127.0.0.1:$M_FWD=pg@a.example" CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms \
  || exit 1
keep_agent MALLORY
run tcp_peer check "127.0.0.1:$M_FWD" 1 1K --timeout 5
expect_status 1 "mallory's stream to pg is refused"
wait_for_line "$DC1_LOG" 'msg="grant scope mismatch" spiffe_id=spiffe://b.example/tunneler/mallory' 5
check "dc1: grant scope mismatch for mallory" $?
grep -F 'spiffe_id=spiffe://b.example/tunneler/mallory' "$DC1_LOG" |
  grep -q 'reason="no live grant for this tunneler: revoked, expired or never given"'
check "the reason: no grant" $?
! grep -q 'msg="data session opened" spiffe_id=spiffe://b.example/tunneler/mallory' "$DC1_LOG"
check "mallory's session never opened" $?
stop_agent "$MALLORY_PID"

# laptop (b.example) asks for a.example laptop's resource.
stop_agent "$LAPTOP_PID"
python3 - "$LIST" <<'PY'
import json, sys
path = sys.argv[1]
doc = json.load(open(path))
for c in doc["connectors"]:
    c["resources"].append("secret@a.example")
json.dump(doc, open(path, "w"))
PY
S_FWD=$(free_port)
use B
start_agent tunneler laptop TRUST_DOMAIN=b.example CONTROLLER_ADDR=127.0.0.1:1 \
  FORWARDS="127.0.0.1:$FWD=pg@a.example,127.0.0.1:$S_FWD=secret@a.example" \
  CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms || exit 1
keep_agent LAPTOP
run tcp_peer check "127.0.0.1:$S_FWD" 1 1K --timeout 5
expect_status 1 "b.example's laptop cannot reach a.example laptop's resource"
wait_for_re "$DC1_LOG" 'resource="secret" reason="resource .*secret.* is not granted to this tunneler"' 5
check "dc1: grant scope mismatch, secret not granted" $?
run tcp_peer check "127.0.0.1:$FWD" 2 64K --timeout 10
expect_status 0 "laptop's pg still works"
stop_agent "$LAPTOP_PID"

# eve: c.example, not federated with A.
fed_start C c.example || exit 1
use C
start_agent tunneler eve TRUST_DOMAIN=c.example \
  ENROLLMENT_TOKEN="$(on C token create --role tunneler --name eve)" || exit 1
stop_agent
cp "$LIST" "$AGENT_STATE/connectors.json"
E_FWD=$(free_port)
start_agent tunneler eve TRUST_DOMAIN=c.example CONTROLLER_ADDR=127.0.0.1:1 \
  FORWARDS="127.0.0.1:$E_FWD=pg@a.example" CONNECTOR_RETRY_MIN=50ms CONNECTOR_RETRY_MAX=100ms \
  || exit 1
keep_agent EVE
run tcp_peer check "127.0.0.1:$E_FWD" 1 1K --timeout 5
expect_status 1 "eve's stream is refused"
wait_for_re "$DC1_LOG" 'msg="data session refused" peer=.* reason="x509: certificate signed by unknown authority"' 5
check "dc1 refuses eve's handshake: no bundle of c.example there" $?
! grep -q 'msg="data session opened" spiffe_id=spiffe://c.example' "$DC1_LOG"
check "no c.example session opened" $?
stop_agent "$EVE_PID"
# b.example's CA (a peer's, on dc1 for laptop's sake) signs a certificate
# for A's own tunneler laptop, which may reach secret. dc1 checks a.example
# identities against a.example's bundle only: refused.
DC1_PORT="$(sed -n 's/.*msg="data listener started" .* port=\([0-9]*\).*/\1/p' "$DC1_LOG" | tail -1)"
mkdir -p "$T/forged"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/forged/leaf.key" \
  -out "$T/forged/leaf.csr" -subj /CN=laptop 2>/dev/null
printf 'subjectAltName=URI:spiffe://a.example/tunneler/laptop\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' >"$T/forged/ext"
openssl x509 -req -in "$T/forged/leaf.csr" -CA "$B_STATE/ca/ca-1.crt" -CAkey "$B_STATE/ca/ca-1.key" \
  -CAcreateserial -out "$T/forged/leaf.pem" -days 1 -extfile "$T/forged/ext" 2>/dev/null
check "b.example's CA signs spiffe://a.example/tunneler/laptop" $?
before=$(grep -c 'msg="data session refused"' "$DC1_LOG")
timeout 10 openssl s_client -connect "127.0.0.1:$DC1_PORT" -tls1_3 -alpn ztr-data/1 \
  -cert "$T/forged/leaf.pem" -key "$T/forged/leaf.key" -CAfile "$A_STATE/ca/ca-1.crt" \
  </dev/null >"$T/forged/out" 2>&1
for _ in $(seq 1 50); do
  [ "$(grep -c 'msg="data session refused"' "$DC1_LOG")" -gt "$before" ] && break; sleep 0.1
done
grep 'msg="data session refused"' "$DC1_LOG" | tail -1 | grep -q 'reason="x509: certificate signed by unknown authority"'
check "dc1 refuses the forged a.example identity at the handshake" $?
! grep -q 'msg="data session opened" spiffe_id=spiffe://a.example/tunneler/laptop' "$DC1_LOG"
check "no session as a.example's laptop" $?
metric_at_least "$DC1_URL" ztr_grant_scope_mismatch_total 2
check "dc1 counted the scope mismatches" $?
stop_agent "$DC1_PID"; [ "$AGENT_STATUS" -eq 0 ]; check "dc1 stops cleanly" $?
fed_stop_all
finish
