#!/usr/bin/env bash
# What was implemented but not exercised: (1) agent.connected and
# telemetry.auth.unavailable follow the control stream — true and flat while
# it is up, false and counting every failed attempt while the controller
# is away, true again after; (2) a partial identity on disk — a certificate
# without its key, a key without its certificate, a key that is not the
# certificate's — is refused at start with `stored identity is incomplete`
# and exit 2 (seed 003's "partial mTLS config" lesson), never a fallback:
# no enrollment with the token at hand, no connection to the controller.
. "$(dirname "$0")/lib.sh"
start_controller ctl || exit 1
start_agent tunneler t1 ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name t1)"
wait_for_state ONLINE 10; check "ONLINE" $?

# ---- (1) agent.connected and telemetry.auth.unavailable -----------------------------
grep -qF '"agent":{"connected":true,"state":"ONLINE","authMode":"mtls-svid"}' <<<"$HEALTH_BODY"
check "agent.connected true while the stream is up" $?
[ "$(json_value telemetry.auth.unavailable)" = 0 ]; check "telemetry.auth.unavailable 0" $?
stop_controller
sleep 1.5
health
grep -qF '"agent":{"connected":false,"state":"RECONNECTING"' <<<"$HEALTH_BODY"
check "agent.connected false while the controller is away" $?
u1=$(json_value telemetry.auth.unavailable)
[ "${u1:-0}" -ge 2 ]; check "telemetry.auth.unavailable counts the failed attempts ($u1)" $?
sleep 1
health; u2=$(json_value telemetry.auth.unavailable)
[ "${u2:-0}" -gt "$u1" ]; check "and keeps counting ($u1 → $u2)" $?
[ "$(grep -c 'reason="connect: connection refused"' "$AGENT_LOG")" -ge "$u1" ]
check "one 'control-plane connection failed' line per attempt" $?
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" || exit 1
wait_for_state ONLINE 10; check "back ONLINE" $?
grep -qF '"agent":{"connected":true,' <<<"$HEALTH_BODY"; check "agent.connected true again" $?
u3=$(json_value telemetry.auth.unavailable); sleep 1; health
[ "$(json_value telemetry.auth.unavailable)" = "$u3" ]; check "and the counter flat again" $?
stop_agent; [ "$AGENT_STATUS" -eq 0 ]; check "clean stop" $?

# ---- (2) a partial identity ---------------------------------------------------------
D="$AGENT_STATE"
tok=$(ctl token create --role tunneler --name t1 --replace)   # usable: must stay unused
sessions() { count_lines "$CTL_LOG" 'msg="node connected"'; }
before=$(sessions)
expect_incomplete() { # DESCRIPTION TEXT
  run_agent tunneler t1 ENROLLMENT_TOKEN="$tok"
  [ "$RUN_STATUS" -eq 2 ]; check "$1: exit 2 (got $RUN_STATUS)" $?
  grep -qF "msg=\"agent failed to start\" error=\"stored identity is incomplete: $2 in $D" "$AGENT_LOG"
  check "$1: \"stored identity is incomplete: $2\"" $?
  ! grep -qF 'msg="enrolled"' "$AGENT_LOG" && ! grep -qF 'msg="agent started"' "$AGENT_LOG"
  check "$1: no enrollment, nothing started" $?
}
mv "$D/key.pem" "$D/key.pem.aside"
expect_incomplete "certificate without its key" "cert.pem without key.pem"
mv "$D/key.pem.aside" "$D/key.pem"; mv "$D/cert.pem" "$D/cert.pem.aside"
expect_incomplete "key without its certificate" "key.pem without cert.pem"
mv "$D/cert.pem.aside" "$D/cert.pem"; cp "$D/key.pem" "$D/key.pem.good"
"$ZTR_TEST_BIN/ztr-pki" ca init --trust-domain example.org --out "$E2E_TMP/other" >/dev/null
cp "$E2E_TMP/other/ca.key" "$D/key.pem"
expect_incomplete "a key that is not the certificate's" "key.pem is not the key of cert.pem"
run ctl token list
expect_out_has "name=t1 prefix=false uses_left=1 " "the token at hand was never used"
[ "$(sessions)" -eq "$before" ] && ! grep -qF 'msg="TLS handshake failed"' "$CTL_LOG"
check "the controller saw no connection at all (no fallback)" $?
mv "$D/key.pem.good" "$D/key.pem"
start_agent tunneler t1
wait_for_state ONLINE 10; check "the whole identity back: ONLINE, no token needed" $?
stop_agent
stop_controller
finish
