#!/usr/bin/env bash
# CA rotation: the new CA joins the bundle and is pushed, new certificates
# come from it, the controller stays reachable for agents that missed the
# rotation, and an agent renewing with a stale bundle reports
# `internal CA mismatch during renewal` and recovers by fetching the bundle
# (failure-modes 4.2).
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
P=(--controller "$CTL_ADDR" --trust-domain example.org)
enroll() {
  local allow=()
  [ "$1" = connector ] && allow=(--address 127.0.0.1)
  mkdir -p "$T/$2"
  probe enroll "${P[@]}" --ca "$CTL_STATE/ca/ca-1.crt" --role "$1" --name "$2" \
    --token "$(ctl token create --role "$1" --name "$2" "${allow[@]}")" --address 127.0.0.1 \
    --out "$T/$2" >/dev/null
}
enroll connector fresh; check "enroll before rotation" $?
enroll connector stale; check "enroll a second agent" $?
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/stale/bundle.pem")" -eq 1 ]; check "bundle holds one CA" $?

run ctl ca rotate
expect_status 0 "ca rotate"
run ctl ca show
expect_out_has "version=2" "bundle version bumped"
[ -f "$CTL_STATE/ca/ca-2.crt" ]; check "second CA created" $?
expect_file_mode "$CTL_STATE/ca/ca-2.key" 600 "new CA key private"

# An up-to-date agent: the pushed bundle holds both CAs; renewal comes from the new one.
run probe session "${P[@]}" --dir "$T/fresh" --role connector --renew --until renewed --duration 5000
expect_status 0 "renewal after rotation"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/fresh/bundle.pem")" -eq 2 ]; check "pushed bundle holds old and new CA" $?
openssl verify -CAfile "$CTL_STATE/ca/ca-2.crt" "$T/fresh/cert.pem" >/dev/null 2>&1
check "renewed certificate is signed by the new CA" $?
run "$ZTR_TEST_BIN/ztr-pki" verify --bundle "$T/fresh/bundle.pem" --trust-domain example.org --role connector --ip 127.0.0.1 "$T/fresh/cert.pem"
expect_status 0 "renewed certificate verifies against the pushed bundle"

# An agent that kept the old bundle: still connects (the controller's own
# certificate comes from the oldest CA), sees the mismatch, asks for the
# bundle, and recovers.
run probe session "${P[@]}" --dir "$T/stale" --role connector --stale-bundle --renew --until recovered --duration 5000
expect_status 0 "stale agent recovers"
expect_out_has "internal CA mismatch during renewal" "failure-modes 4.2 symptom"
expect_out_has "renewal recovered" "recovered by fetching the bundle"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/stale/bundle.pem")" -eq 2 ]; check "stale agent now has both CAs" $?

# The old CA stays in the bundle until its last leaf can have expired.
grep -q '"retire_at": [1-9]' "$CTL_STATE/ca/state.json"; check "old CA has a retire time" $?
stop_controller
start_controller ctl || exit 1
P=(--controller "$CTL_ADDR" --trust-domain example.org)
run ctl ca show
expect_out_has "version=2" "rotation survives a restart"
enroll tunneler after; check "enroll after the restart" $?
openssl verify -CAfile "$CTL_STATE/ca/ca-2.crt" "$T/after/cert.pem" >/dev/null 2>&1
check "after a restart the new CA still signs" $?
stop_controller
finish
