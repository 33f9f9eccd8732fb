#!/usr/bin/env bash
# Failure mode 4.2: the controller rotates its CA while an agent's trust
# bundle is stale (the pushed bundle cannot be saved: bundle.pem is replaced
# by a directory, as a read-only or full disk would). At renewal the new
# chain (from the new CA) does not verify against the agent's bundle: it
# logs `internal CA mismatch during renewal`, sends bundle_request, and the
# renewal is rejected while the bundle cannot be updated. Unlike the
# document's "client eventually expires", ztr recovers: once the bundle can
# be saved, the renewal goes through on the same control stream.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
fm_mode 4.2 "CA Mismatch During Renewal" "internal CA mismatch during renewal"
PKI="$ZTR_TEST_BIN/ztr-pki"
TTL=10
start_controller ctl SVID_TTL=${TTL}s || exit 1
serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
check "connector starts" $?
wait_for_state ONLINE 10; check "connector ONLINE" $?
NODE=$(json_value node_id); RENEW_AT=$(json_value renew_at); NOT_AFTER=$(json_value not_after)
DIR=$AGENT_STATE LOG=$AGENT_LOG
serial0=$(serial "$DIR/cert.pem")

# The bundle cannot be saved any more; the controller rotates its CA.
rm -f "$DIR/bundle.pem"; mkdir -p "$DIR/bundle.pem/blocked"
run ctl ca rotate
expect_out "ca rotated version=2" "controller rotates its CA"
wait_for_line "$LOG" 'msg="bundle not saved"' 5
check "the agent cannot save the pushed bundle: its bundle stays stale" $?

# Renewal (due at renew_at, 40–60 % of 10 s): the chain comes from ca-2.
limit=$((RENEW_AT - $(date +%s) + 4)); [ "$limit" -ge 3 ] || limit=3
wait_for_line "$LOG" 'msg="internal CA mismatch during renewal"' "$limit"
fm_seen "$LOG"
grep -F 'internal CA mismatch during renewal' "$LOG" | head -1 | grep -qF 'action=bundle_request'
check "the agent asks the controller for the bundle" $?
wait_for_line "$LOG" 'msg="renewal failed"' 5
check "the renewal is rejected while the bundle cannot be updated" $?
[ "$(serial "$DIR/cert.pem")" = "$serial0" ]; check "the old certificate stays in place" $?
health
grep -qE '"renewals":\{"ok":0,"failed":[1-9]' <<<"$HEALTH_BODY"; check "/health counts the failed renewal" $?

# The disk is fixed before the old certificate expires: ztr recovers.
rm -rf "$DIR/bundle.pem"
limit=$((NOT_AFTER - $(date +%s) + 2)); [ "$limit" -ge 2 ] || limit=2
wait_for_line "$LOG" 'msg="certificate renewed after a bundle update"' "$limit"
check "recovery: certificate renewed after a bundle update, before the expiry" $?
openssl verify -CAfile "$CTL_STATE/ca/ca-2.crt" "$DIR/cert.pem" >/dev/null 2>&1
check "the renewed certificate comes from the new CA" $?
grep -c 'BEGIN CERTIFICATE' "$DIR/bundle.pem" | grep -qx 2; check "bundle.pem holds both CAs" $?
wait_for_state ONLINE 3; check "ONLINE after recovering (/health $HEALTH_CODE)" $?
[ "$(count_lines "$LOG" 'msg="control-plane stream connected"')" -eq 1 ] &&
  [ "$(count_lines "$LOG" 'msg="control-plane stream lost"')" -eq 0 ]
check "the same control-plane stream throughout" $?
! grep -qF 'to=EXPIRED' "$LOG" && [ "$(count_lines "$LOG" 'to=ENROLLING')" -eq 1 ]
check "never expired, never re-enrolled (one enrollment, at the start)" $?
run ctl node list
expect_out_has "id=$NODE name=dc1 role=connector status=ONLINE" "admin API: ONLINE throughout"
run ctl events --limit 1000
expect_out_has "kind=renewed node=$NODE" "controller event: renewed"
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "connector exits 0" $?
stop_controller
fm_trim
fm_finish
