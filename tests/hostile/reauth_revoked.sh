#!/usr/bin/env bash
# Attack: come back through re-authentication. A revoked node's key (the
# node was revoked because it was stolen) and a key whose certificate
# expired long ago (past REAUTH_GRACE) both hold a certificate the
# controller once issued; re-authentication must not resurrect either. The
# revoked node gets `revoked` (only after proving the key: without it, it
# reads like any refusal) and nothing is issued; the long-expired one gets
# `not_allowed` `re-authentication grace is over`. A token is then the only
# way back, and a revoked name cannot enroll.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl SVID_TTL=3s REAUTH_GRACE=2s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
R=(--controller "$CTL_ADDR" --trust-domain example.org --ca "$CA")
enroll() { # NAME DIR
  mkdir -p "$2"
  run probe enroll "${R[@]}" --token "$(ctl token create --role tunneler --name "$1")" \
    --role tunneler --name "$1" --out "$2"
  local node spiffe
  node=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
  spiffe=$(sed -n 's/^enrolled [0-9a-f]* \(.*\)$/\1/p' <<<"$RUN_OUT")
  printf '{"node_id":"%s","spiffe_id":"%s"}\n' "$node" "$spiffe" >"$2/node.json"
  echo "$node"
}
REVOKED=$(enroll lost "$T/lost"); check "node lost enrolls" $?
OLDKEY=$(enroll old "$T/old"); check "node old enrolls" $?
run ctl node revoke "$REVOKED" --reason "laptop stolen"
expect_status 0 "lost is revoked"
issued() { run ctl events --limit 1000; grep -c "kind=reauthenticated" <<<"$RUN_OUT"; }

# ---- the revoked node's key ----------------------------------------------------------------
sleep 4   # both certificates expired, within REAUTH_GRACE for a moment
run probe reauth "${R[@]}" --dir "$T/lost" --out "$T/lost2"
[ "$RUN_STATUS" -ne 0 ]; check "a revoked node re-authenticates nothing (exit $RUN_STATUS)" $?
expect_out_has '"type":"revoked"' "it is told: revoked"
[ ! -f "$T/lost2/cert.pem" ]; check "no certificate" $?
grep -F 'msg="re-authentication refused"' "$CTL_LOG" | grep -F "node=$REVOKED" |
  grep -qF 'detail="node revoked"'
check "controller: re-authentication refused, node revoked" $?
run ctl node list
expect_out_has "id=$REVOKED name=lost role=tunneler status=EXPIRED revoked=true" "still revoked"
# Without the key it looks like any other refusal: nothing to learn.
"$ZTR_TEST_BIN/ztr-pki" ca init --trust-domain example.org --out "$T/own" >/dev/null
run probe reauth "${R[@]}" --dir "$T/lost" --key "$T/own/ca.key"
expect_err_has "permission denied" "someone else's key: permission denied, not revoked"
! grep -qF '"type":"revoked"' <<<"$RUN_OUT"; check "(revocation not disclosed)" $?

# ---- a key whose certificate expired past REAUTH_GRACE -------------------------------------
sleep 2
run probe reauth "${R[@]}" --dir "$T/old" --out "$T/old2"
[ "$RUN_STATUS" -ne 0 ]; check "past REAUTH_GRACE nothing is issued" $?
expect_err_has "re-authentication grace is over" "it is told: re-authentication grace is over"
[ ! -f "$T/old2/cert.pem" ]; check "no certificate" $?
grep -F 'msg="re-authentication refused"' "$CTL_LOG" | grep -F "node=$OLDKEY" |
  grep -qF 'REAUTH_GRACE 2s'
check "controller logs the grace it applied" $?
[ "$(issued)" -eq 0 ]; check "no re-authentication at all" $?

# The ways back are the operator's: a token (not for a revoked name).
run probe enroll "${R[@]}" --token "$(ctl token create --role tunneler --name lost)" \
  --role tunneler --name lost --out "$T/lost3"
expect_err_has "permission denied" "a revoked name cannot enroll again"
stop_controller
finish
