#!/usr/bin/env bash
# Certificate renewal by a running connector (SVID_TTL=20s): due at 50 % of
# the lifetime ±10 %, a fresh key, the IP SAN kept, over the SAME control
# stream (one `control-plane stream connected`, no `stream lost`); a CA
# rotation mid-life pushes the bundle and the next certificate comes from the
# new CA; an agent whose trust bundle is stale at renewal time logs
# `internal CA mismatch during renewal` (failure-modes 4.2) and recovers.
#
# The stale case: the controller pushes the bundle on every connect and on
# every rotation, so an agent that was stopped during a rotation is up to
# date again before it can renew. What leaves a running agent with a stale
# bundle is a push it cannot save: bundle.pem is replaced by a directory
# (think read-only or full disk) before the second rotation, and restored
# once the mismatch has been seen. tests/e2e/controller_ca_rotation.sh
# covers the controller's side with the probe's --stale-bundle.
. "$(dirname "$0")/lib.sh"
PKI="$ZTR_TEST_BIN/ztr-pki"
TTL=20
start_controller ctl SVID_TTL=${TTL}s HEARTBEAT_INTERVAL=300ms || exit 1

serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }
cert_pub() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
key_pub() { openssl pkey -in "$1" -pubout 2>/dev/null; }
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }
# rollout_is HOLDING BEHIND [SECONDS]: GET /api/admin/ca's rollout (what
# the agents' heartbeats report holding) reaches these numbers.
rollout_is() {
  local i body
  for ((i = 0; i < ${3:-5} * 10; i++)); do
    body="$(curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/ca")"
    ROLLOUT="${body#*\"rollout\":}"
    [ "$(json_value holding "$ROLLOUT") $(json_value behind "$ROLLOUT")" = "$1 $2" ] && return 0
    sleep 0.1
  done
  return 1
}
one_stream() { # one_stream WHEN: still the first control connection
  [ "$(count_lines "$LOG" 'msg="control-plane stream connected"')" -eq 1 ] &&
    [ "$(count_lines "$LOG" 'msg="control-plane stream lost"' 'msg="control-plane connection failed"')" -eq 0 ] &&
    [ "$(count_lines "$CTL_LOG" "msg=\"node connected\" node=$NODE ")" -eq 1 ]
  check "$1: same control-plane connection (one stream connected, none lost)" $?
}
# renew_window EVENT-LINE: /health's renew_at is 40–60 % into the lifetime
# of the certificate received at EVENT-LINE.
renew_window() {
  local got; got=$(log_epoch "$1")
  local life=$((NOT_AFTER - got)) off=$((RENEW_AT - got))
  # Whole seconds on both sides (the log line's and the agent's clock read
  # may straddle a second): one second of slack each way.
  [ "$life" -ge $((TTL - 1)) ] && [ $(((off + 1) * 10)) -ge $((life * 4)) ] &&
    [ $(((off - 1) * 10)) -le $((life * 6)) ]
  check "$2: renew_at is 50 % ±10 % of the lifetime (${off} s of ${life} s)" $?
}
read_health() {
  health "$URL"
  NOT_AFTER=$(json_value not_after); RENEW_AT=$(json_value renew_at)
}

start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
check "connector starts" $?
PID=$AGENT_PID URL=$AGENT_HEALTH_URL LOG=$AGENT_LOG DIR=$AGENT_STATE
wait_for_state ONLINE 15; check "connector ONLINE" $?
NODE=$(json_value node_id)
read_health
renew_window "$(grep -F 'msg="enrolled"' "$LOG")" "enrollment"
serial0=$(serial "$DIR/cert.pem"); pub0=$(cert_pub "$DIR/cert.pem"); renew_at0=$RENEW_AT
[ -n "$serial0" ] && [ -n "$pub0" ]; check "first certificate readable" $?

# ---- CA rotation mid-life: the bundle is pushed over the live stream -------------
run ctl ca rotate
expect_out "ca rotated version=2" "ca rotate"
wait_for_line "$LOG" 'msg="trust bundle updated" version=2' 5
check "agent logs the pushed bundle" $?
[ "$(ncerts "$DIR/bundle.pem")" -eq 2 ]; check "bundle.pem holds the old and the new CA" $?
rollout_is 1 0; check "the admin API shows the node holding bundle 2 (its heartbeat says so): $ROLLOUT" $?
one_stream "after the rotation"

# ---- the first renewal ----------------------------------------------------------------
wait_for_line "$LOG" 'msg="certificate renewed"' $((TTL * 6 / 10 + 3))
check "certificate renewed" $?
line=$(grep -F 'msg="renewing certificate"' "$LOG" | head -1)
at=$(log_epoch "$line")
[ "$at" -ge "$renew_at0" ] && [ "$at" -le $((renew_at0 + 2)) ]
check "renewal started at renew_at ($at vs $renew_at0)" $?
read_health
[ "$(json_value state)" = ONLINE ] && [ "$HEALTH_CODE" = 200 ]; check "ONLINE after the renewal" $?
[ "$RENEW_AT" -gt "$renew_at0" ]; check "/health renew_at moved ($renew_at0 → $RENEW_AT)" $?
grep -qF '"renewals":{"ok":1,"failed":0}' <<<"$HEALTH_BODY"
check "/health renewals ok=1 failed=0" $?
renew_window "$(grep -F 'msg="certificate renewed"' "$LOG" | head -1)" "renewal"
serial1=$(serial "$DIR/cert.pem")
[ -n "$serial1" ] && [ "$serial1" != "$serial0" ]; check "new serial ($serial0 → $serial1)" $?
pub1=$(cert_pub "$DIR/cert.pem")
[ -n "$pub1" ] && [ "$pub1" != "$pub0" ]; check "renewed certificate has a new public key" $?
[ "$(key_pub "$DIR/key.pem")" = "$pub1" ]; check "key.pem holds the new key" $?
expect_file_mode "$DIR/key.pem" 600 "renewed key private"
run "$PKI" verify --bundle "$DIR/bundle.pem" --trust-domain example.org --role connector --ip 127.0.0.1 "$DIR/cert.pem"
expect_out "ok spiffe://example.org/connector/dc1" "renewed certificate keeps the IP SAN and verifies"
openssl verify -CAfile "$CTL_STATE/ca/ca-2.crt" "$DIR/cert.pem" >/dev/null 2>&1
check "renewed certificate comes from the new CA (ca-2)" $?
! openssl verify -CAfile "$CTL_STATE/ca/ca-1.crt" "$DIR/cert.pem" >/dev/null 2>&1
check "... and not from the old one" $?
grep -qF "msg=\"certificate renewed\" node=$NODE " "$CTL_LOG"; check "controller logs the renewal" $?
one_stream "after the renewal"

# ---- a stale bundle at renewal time ----------------------------------------------------
renew_at1=$RENEW_AT
rm -f "$DIR/bundle.pem"; mkdir -p "$DIR/bundle.pem/blocked"
run ctl ca rotate
expect_out "ca rotated version=3" "second rotation"
wait_for_line "$LOG" 'msg="bundle not saved"' 5
check "the push cannot be saved: the agent keeps its old bundle" $?
rollout_is 0 1; check "... and the admin API shows it behind, still on bundle 2: $ROLLOUT" $?
[ "$(json_value bundle_version "$ROLLOUT")" = 2 ]; check "... naming the version it holds" $?
limit=$((renew_at1 - $(date +%s) + 4)); [ "$limit" -ge 5 ] || limit=5
wait_for_line "$LOG" 'msg="internal CA mismatch during renewal"' "$limit"
check "failure-modes 4.2 symptom: internal CA mismatch during renewal" $?
grep -F 'internal CA mismatch during renewal' "$LOG" | head -1 | grep -qF 'action=bundle_request'
check "the agent asks for the bundle" $?
wait_for_line "$LOG" 'msg="renewal failed"' 5
check "renewal fails while the bundle cannot be saved, and is retried" $?
rm -rf "$DIR/bundle.pem"
wait_for_line "$LOG" 'msg="certificate renewed after a bundle update"' 15
check "recovery: certificate renewed after a bundle update" $?
grep -qF 'msg="trust bundle updated" version=3' "$LOG"; check "bundle version 3 saved" $?
[ "$(ncerts "$DIR/bundle.pem")" -eq 3 ]; check "bundle.pem holds all three CAs" $?
openssl verify -CAfile "$CTL_STATE/ca/ca-3.crt" "$DIR/cert.pem" >/dev/null 2>&1
check "recovered certificate comes from ca-3" $?
run "$PKI" verify --bundle "$DIR/bundle.pem" --trust-domain example.org --role connector --ip 127.0.0.1 "$DIR/cert.pem"
expect_out "ok spiffe://example.org/connector/dc1" "recovered certificate keeps the IP SAN"
[ "$(key_pub "$DIR/key.pem")" = "$(cert_pub "$DIR/cert.pem")" ]; check "key.pem matches the recovered certificate" $?
read_health
[ "$(json_value state)" = ONLINE ] && [ "$HEALTH_CODE" = 200 ]; check "ONLINE after recovering" $?
[ "$RENEW_AT" -gt "$renew_at1" ]; check "renew_at moved again" $?
grep -qE '"renewals":\{"ok":2,"failed":[1-9]' <<<"$HEALTH_BODY"; check "/health renewals ok=2, failures counted" $?
one_stream "after the stale-bundle recovery"
run ctl node list
expect_out_has "id=$NODE name=dc1 role=connector status=ONLINE revoked=false" "node ONLINE throughout"
expect_out_has "renewal_overdue=false" "not overdue"

stop_agent "$PID"; [ "$AGENT_STATUS" -eq 0 ]; check "connector exits 0" $?
stop_controller
finish
