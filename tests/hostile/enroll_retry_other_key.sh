#!/usr/bin/env bash
# Attack: replaying a consumed enrollment token. An agent that never kept
# the controller's answer (a full disk, a crash) may ask again with the same
# token and the SAME key (its CSR proves possession): it gets its own node
# back. That must open nothing to anyone else: the consumed token presented
# with ANOTHER key is refused exactly as before (`invalid enrollment token`,
# a `denied` event, no node created); so is the same key once the token's
# TTL is over, the same key for another NODE_NAME or role, and the same key
# for a node revoked since (its token does not resurrect it).
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
E=(--controller "$CTL_ADDR" --trust-domain example.org --ca "$CA")
nodes() { ctl node list | grep -c "role=$1"; }

tok=$(ctl token create --role connector --name dc1 --address 127.0.0.1 --ttl 8s)
mkdir -p "$T/a" "$T/b" "$T/c" "$T/d"
run probe enroll "${E[@]}" --token "$tok" --role connector --name dc1 --address 127.0.0.1:7444 --out "$T/a"
expect_status 0 "dc1 enrolls with its single-use token"
NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")

# ---- the legitimate retry: same token, same key ----------------------------------------
run probe enroll "${E[@]}" --token "$tok" --role connector --name dc1 --address 127.0.0.1:7444 \
  --key "$T/a/key.pem" --out "$T/b"
expect_status 0 "the same token with the same key enrolls again (a retry)"
expect_out_has "enrolled $NODE spiffe://example.org/connector/dc1" "the retry gets the same node and SPIFFE ID"
[ "$(nodes connector)" = 1 ]; check "still one connector node" $?

# ---- the attack: the consumed token with another key ---------------------------------
run probe enroll "${E[@]}" --token "$tok" --role connector --name dc1 --address 127.0.0.1:7444 --out "$T/c"
expect_status 1 "the consumed token with another key is refused"
expect_err "invalid enrollment token" "with the usual text"
[ ! -e "$T/c/cert.pem" ]; check "no certificate for the other key" $?
run ctl events
grep -F 'kind=denied' <<<"$RUN_OUT" | grep -qF 'name=dc1' && grep -F 'kind=denied' <<<"$RUN_OUT" | grep -qF 'token used up'
check "a denied event: token used up" $?

# The same key for another name or another role.
run probe enroll "${E[@]}" --token "$tok" --role connector --name dc2 --key "$T/a/key.pem" --out "$T/c"
expect_status 1 "the same key for another NODE_NAME is refused"
run probe enroll "${E[@]}" --token "$tok" --role tunneler --name dc1 --key "$T/a/key.pem" --out "$T/c"
expect_status 1 "the same key for another role is refused"
[ "$(nodes connector)" = 1 ] && [ "$(nodes tunneler)" = 0 ]; check "no node created" $?

# A fleet token (a prefix): its key enrolled dc-a; the same key may not take dc-b.
fleet=$(ctl token create --role connector --name dc- --prefix --uses 1 --address 127.0.0.1)
run probe enroll "${E[@]}" --token "$fleet" --role connector --name dc-a --out "$T/d"
expect_status 0 "dc-a enrolls with a fleet token"
FLEET_NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
run probe enroll "${E[@]}" --token "$fleet" --role connector --name dc-b --key "$T/d/key.pem" --out "$T/c"
expect_status 1 "the same key for another name under the prefix is refused"
expect_err "invalid enrollment token" "as a used-up token"
! ctl node list | grep -q "name=dc-b "; check "no node dc-b" $?

# A revoked node's token does not bring it back.
run ctl node revoke "$FLEET_NODE" --reason "host lost"
expect_status 0 "dc-a revoked"
run probe enroll "${E[@]}" --token "$fleet" --role connector --name dc-a --key "$T/d/key.pem" --out "$T/c"
expect_status 1 "the revoked node's token and key are refused"
ctl node list --json | tr -d " \n" | grep -qE "\"name\":\"dc-a\"[^}]*\"revoked\":true|\"revoked\":true[^}]*\"name\":\"dc-a\""
check "dc-a stays revoked" $?

# ---- after the token's TTL, the same key is refused ---------------------------------
sleep 8
run probe enroll "${E[@]}" --token "$tok" --role connector --name dc1 --address 127.0.0.1:7444 \
  --key "$T/a/key.pem" --out "$T/c"
expect_status 1 "the same key after the token's TTL is refused"
expect_err "invalid enrollment token" "with the usual text"
grep -F 'msg="enrollment denied"' "$CTL_LOG" | grep -qF 'detail="token expired"'
check "the controller says why: token expired" $?
[ "$(nodes connector)" = 2 ]; check "no node created by any of it" $?
finish
