#!/usr/bin/env bash
# Attack: an enrolled connector (or anyone holding a connector token)
# announces a resource it was never meant to serve ("I serve pg") and the
# controller hands it to every tunneler granted pg, which then sends its pg
# traffic there. Now a connector is handed out for a resource only when the
# operator bound the resource to it (`resource add/bind --connector NAME`)
# and it announces the resource: the hijacker is left out of the tunneler's
# connector list, the bound connector stays in it, and the controller warns
# and records a security event naming the connector and the resource; a
# tunneler that dials the hijacker anyway is refused there, for the
# hijacker's allowlist carries only the grants to what is bound to it.
# Likewise an address a connector announces in hello becomes an IP SAN of
# its renewed certificate only when it was certified at enrollment or the
# operator set it (`node set-addresses`).
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"

ctl resource add pg >/dev/null
run ctl resource bind pg --connector dc1-a
expect_status 0 "pg is bound to connector dc1-a"
ctl allow --tunneler laptop --resource pg >/dev/null

enroll() { # enroll ROLE NAME
  local allow=()
  [ "$1" = connector ] && allow=(--address 127.0.0.1)
  mkdir -p "$T/$2"
  run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
    --token "$(ctl token create --role "$1" --name "$2" "${allow[@]}")" --role "$1" --name "$2" \
    --address 127.0.0.1 --out "$T/$2"
  expect_status 0 "$1 $2 enrolls"
}
enroll connector dc1-a
enroll connector evil
enroll tunneler laptop

# Both connectors announce pg and stay connected.
connector_session() { # connector_session NAME DATA_PORT
  "$ZTR_TEST_BIN/../tests/tools/ctl_probe" session --controller "$CTL_ADDR" \
    --trust-domain example.org --role connector --dir "$T/$1" --resource pg \
    --data-listen "127.0.0.1:$2" --interval 200 --duration 20000 >"$T/$1.out" 2>&1 &
  E2E_PIDS+=("$!")
}
connector_session dc1-a 7444
wait_for_line "$T/dc1-a.out" '"type":"welcome"' 10
check "dc1-a says hello" $?
connector_session evil 7445
wait_for_line "$T/evil.out" '"type":"welcome"' 10
check "evil says hello" $?

# The tunneler prints every message it receives.
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role tunneler \
  --dir "$T/laptop" --until connectors --duration 5000
list=$(grep '"type":"connectors"' <<<"$RUN_OUT" | tail -1)
grep -qF 'spiffe://example.org/connector/dc1-a' <<<"$list"
check "the bound connector dc1-a is in laptop's connector list" $?
! grep -qF 'spiffe://example.org/connector/evil' <<<"$list"
check "the hijacker is not in laptop's connector list" $?
! grep -qF '127.0.0.1:7445' <<<"$list"
check "the hijacker's data address is not handed out" $?
# A tunneler that dials the hijacker anyway (it knows its address) finds
# nothing there: a connector is told only of the grants to what is bound
# to it, so evil's allowlist does not carry laptop's pg.
wait_for_line "$T/evil.out" '"type":"allowlist"' 5
! grep '"type":"allowlist"' "$T/evil.out" | tail -1 | grep -qF 'spiffe://example.org/tunneler/laptop'
check "the hijacker's allowlist does not carry laptop's grant to pg" $?
wait_for_line "$T/dc1-a.out" 'spiffe://example.org/tunneler/laptop' 5
grep '"type":"allowlist"' "$T/dc1-a.out" | tail -1 | grep -qF '"resources":["pg"]'
check "the bound connector's allowlist does" $?

wait_for_line "$CTL_LOG" 'msg="announced resource not bound"' 5
grep -F 'msg="announced resource not bound"' "$CTL_LOG" | grep -qF 'resource=pg'
check "the controller warns about the unbound announcement" $?
[ "$(grep -cF 'msg="announced resource not bound"' "$CTL_LOG")" -eq 1 ]
check "one warn line, not one per hello or heartbeat" $?
run ctl events
expect_out_has "announced resource not bound: connector=evil resource=pg" \
  "a security event names the connector and the resource"

# The same connector announces an address it was never certified for and
# renews: the new certificate names only the enrolled address.
old_serial=$("$ZTR_TEST_BIN/ztr-pki" inspect "$T/evil/cert.pem" | sed -n 's/.*serial=//p')
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role connector \
  --dir "$T/evil" --resource pg --data-listen 127.0.0.1:7445 --address 127.0.0.1 \
  --address 203.0.113.9 --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "evil renews"
new_serial=$("$ZTR_TEST_BIN/ztr-pki" inspect "$T/evil/cert.pem" | sed -n 's/.*serial=//p')
[ -n "$new_serial" ] && [ "$new_serial" != "$old_serial" ]
check "evil holds the renewed certificate" $?
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$CA" --trust-domain example.org --role connector \
  --ip 203.0.113.9 "$T/evil/cert.pem"
[ "$RUN_STATUS" -ne 0 ]; check "the renewed certificate does not name the announced 203.0.113.9" $?
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$CA" --trust-domain example.org --role connector \
  --ip 127.0.0.1 "$T/evil/cert.pem"
expect_status 0 "it still names the enrolled 127.0.0.1"
grep -F 'msg="announced address not allowed"' "$CTL_LOG" | grep -qF 'address=203.0.113.9'
check "the controller warns about the address" $?
run ctl events
expect_out_has "announced address not allowed: connector=evil address=203.0.113.9" \
  "a security event names the connector and the address"

# The operator allows it: the next renewal names it.
evil_id=$(ctl node list | grep 'name=evil ' | sed 's/.*id=\([0-9a-f]*\).*/\1/')
run ctl node set-addresses "$evil_id" --address 127.0.0.1 --address 203.0.113.9
expect_status 0 "the operator allows 203.0.113.9 for evil"
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role connector \
  --dir "$T/evil" --resource pg --data-listen 127.0.0.1:7445 --address 127.0.0.1 \
  --address 203.0.113.9 --renew --until renewed --duration 5000
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$CA" --trust-domain example.org --role connector \
  --ip 203.0.113.9 "$T/evil/cert.pem"
expect_status 0 "once allowed, the renewed certificate names 203.0.113.9"

# Binding evil later (the operator's decision) lets it serve pg.
run ctl resource bind pg --connector evil
expect_status 0 "the operator binds pg to evil"
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role tunneler \
  --dir "$T/laptop" --until connectors --duration 5000
grep '"type":"connectors"' <<<"$RUN_OUT" | tail -1 | grep -qF 'connector/evil'
check "once bound, evil is handed out" $?
run ctl resource list
expect_out_has "connectors=dc1-a,evil" "resource list shows the bindings"
finish
