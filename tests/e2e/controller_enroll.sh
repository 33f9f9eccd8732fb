#!/usr/bin/env bash
# Enrollment against the real controller: good token, used token, expired
# token, wrong role or name, a race on a single-use token, multi-use
# tokens, and an unauthenticated session that tries anything but enroll.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org)

run ctl token create --role connector --name dc1-a --address 127.0.0.1
expect_status 0 "token create"
token="$RUN_OUT"
[[ "$token" =~ ^[0-9a-f]{16}\.[0-9a-f]{64}$ ]]; check "stdout is only the token" $?

mkdir -p "$T/dc1"
run probe enroll "${P[@]}" --token "$token" --role connector --name dc1-a --address 127.0.0.1:7444 --out "$T/dc1"
expect_status 0 "enroll with a fresh token"
expect_out_has "enrolled " "enrolled reply"
expect_out_has "spiffe://example.org/connector/dc1-a" "SPIFFE ID"
expect_file_mode "$T/dc1/key.pem" 600 "agent key private"
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$T/dc1/bundle.pem" --trust-domain example.org --role connector --ip 127.0.0.1 "$T/dc1/cert.pem"
expect_out "ok spiffe://example.org/connector/dc1-a" "issued SVID verifies with an IP SAN for the advertised address"
run "$ZTR_TEST_BIN/ztr-pki" inspect "$T/dc1/cert.pem"
expect_out_has "lifetime_seconds=86460" "default SVID_TTL 24h (+60 s skew)"

mkdir -p "$T/again"
run probe enroll "${P[@]}" --token "$token" --role connector --name dc1-a --out "$T/again"
expect_status 1 "reused token"
expect_err "invalid enrollment token" "failure-modes 1.2 (used)"

run probe enroll "${P[@]}" --token "0123456789abcdef.$(printf '0%.0s' {1..64})" --role connector --name dc1-a --out "$T/again"
expect_err "invalid enrollment token" "unknown token"
run probe enroll "${P[@]}" --token "garbage" --role connector --name dc1-a --out "$T/again"
expect_err "invalid enrollment token" "malformed token"

token=$(ctl token create --role tunneler --name laptop)
run probe enroll "${P[@]}" --token "$token" --role connector --name laptop --out "$T/again"
expect_status 1 "role mismatch"
expect_err "permission denied" "failure-modes 1.2 (role)"
run probe enroll "${P[@]}" --token "$token" --role tunneler --name other --out "$T/again"
expect_err "permission denied" "name mismatch"
mkdir -p "$T/laptop"
run probe enroll "${P[@]}" --token "$token" --role tunneler --name laptop --out "$T/laptop"
expect_status 0 "a refused attempt does not consume the token"

token=$(ctl token create --role tunneler --name short --ttl 1s)
sleep 2.1
run probe enroll "${P[@]}" --token "$token" --role tunneler --name short --out "$T/again"
expect_err "invalid enrollment token" "expired token"

# Two agents race one single-use token: exactly one wins.
token=$(ctl token create --role tunneler --name race)
mkdir -p "$T/r1" "$T/r2"
probe enroll "${P[@]}" --token "$token" --role tunneler --name race --out "$T/r1" >"$T/r1.out" 2>&1 &
a=$!
probe enroll "${P[@]}" --token "$token" --role tunneler --name race --out "$T/r2" >"$T/r2.out" 2>&1 &
b=$!
wait $a; sa=$?; wait $b; sb=$?
[ $((sa + sb)) -eq 1 ]; check "exactly one of two racing enrolls wins ($sa, $sb)" $?
grep -qF "invalid enrollment token" "$T/r1.out" "$T/r2.out"; check "the loser is told invalid enrollment token" $?

# A fleet token: --uses 2 with a name prefix.
token=$(ctl token create --role connector --name edge- --address 127.0.0.1 --prefix --uses 2)
for n in 1 2 3; do
  mkdir -p "$T/edge$n"
  run probe enroll "${P[@]}" --token "$token" --role connector --name "edge-$n" --out "$T/edge$n"
  if [ "$n" -le 2 ]; then expect_status 0 "fleet token use $n"; else expect_err "invalid enrollment token" "fleet token used up"; fi
done
run probe enroll "${P[@]}" --token "$(ctl token create --role connector --name edge- --address 127.0.0.1 --prefix)" --role connector --name core-1 --out "$T/again"
expect_err "permission denied" "name outside the prefix"

# Without a client certificate only enroll is allowed.
run probe raw "${P[@]}" --send '{"type":"hello","version":1,"role":"connector"}'
expect_status 1 "hello without a certificate"
expect_out_has '"code":"permission_denied"' "refused"
expect_out_has "may only enroll" "says why"

run ctl token list
expect_out_has "name=dc1-a" "token list shows tokens"
[[ "$RUN_OUT" != *"$token"* ]]; check "token list never shows a secret" $?
run ctl events
expect_out_has "kind=enrolled" "enrollments are events"
expect_out_has "kind=denied" "denials are events"
# Filtered in the controller: one kind, newest first, one node's timeline.
run ctl events --kind enrolled --newest
expect_status 0 "events --kind enrolled --newest"
! grep -qv 'kind=enrolled' <<<"$RUN_OUT"; check "only enrolled events are listed" $?
first=$(sed -n '1s/^id=\([0-9]*\).*/\1/p' <<<"$RUN_OUT"); last=$(sed -n '$s/^id=\([0-9]*\).*/\1/p' <<<"$RUN_OUT")
[ -n "$first" ] && [ "$first" -gt "$last" ]; check "newest first ($first before $last)" $?
node=$(sed -n '1s/.* node=\([0-9a-f]*\).*/\1/p' <<<"$RUN_OUT")
run ctl events --node "$node"
[ -n "$RUN_OUT" ] && ! grep -qv "node=$node" <<<"$RUN_OUT"; check "events --node lists that node's events only" $?
run ctl events --kind 'no such"kind' --limit 5
expect_status 0 "a kind with quotes is sent encoded"
[ -z "$RUN_OUT" ]; check "and matches nothing" $?
stop_controller
! grep -qE '[0-9a-f]{16}\.[0-9a-f]{64}' "$CTL_LOG"; check "no token in the controller log" $?
finish
