#!/usr/bin/env bash
# Attack: a node keeps a control session open past its certificate's
# not_after — an agent that stopped renewing, or a copy of its key used
# only while it was valid. TLS checks the certificate once, at the
# handshake, and the controller used to keep such a session (heartbeats
# acked, node ONLINE) for as long as it stayed up. Now every control stream
# ends at the earliest not_after of its peer's chain: the controller closes
# it ("peer certificate expired"), logs the node's disconnection with that
# reason and shows it EXPIRED; the expired certificate cannot open another.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
# Certificates of 15 s: the session outlives its certificate within the test.
start_controller ctl SVID_TTL=15s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org --role connector --dir "$T/n")

mkdir -p "$T/n"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name n1 --address 127.0.0.1)" --role connector --name n1 \
  --address 127.0.0.1:7444 --out "$T/n"
expect_status 0 "node n1 enrolls with a 15 s certificate"
NOT_AFTER=$(date -u -d "$("$ZTR_TEST_BIN/ztr-pki" inspect "$T/n/cert.pem" | tr ' ' '\n' |
  sed -n 's/^not_after=//p')" +%s 2>/dev/null)

# The session heartbeats and never renews; it would stay 60 s.
"$ZTR_TEST_BIN/../tests/tools/ctl_probe" session "${P[@]}" --interval 300 --duration 60000 \
  >"$T/session.out" 2>&1 &
SESSION=$!; E2E_PIDS+=("$SESSION")
wait_for_line "$T/session.out" '"type":"welcome"' 10
check "the node's session is welcomed" $?
run ctl node list
expect_out_has "name=n1 role=connector status=ONLINE" "ONLINE while its certificate is valid"

# ---- past not_after --------------------------------------------------------------------
wait_for_line "$CTL_LOG" 'reason="peer certificate expired"' 30
check "the controller closes the session at the certificate's expiry" $?
closed_at=$(date -u +%s)
[ -n "$NOT_AFTER" ] && [ "$closed_at" -ge "$NOT_AFTER" ] && [ "$closed_at" -le $((NOT_AFTER + 6)) ]
check "closed within seconds of not_after ($NOT_AFTER, closed $closed_at)" $?
grep -F 'msg="node disconnected"' "$CTL_LOG" | grep -qF 'reason="peer certificate expired"'
check "controller logs: node disconnected, reason peer certificate expired" $?
wait "$SESSION"
grep -qF "closed:" "$T/session.out"; check "the session ended before its 60 s" $?
run ctl node list
expect_out_has "name=n1 role=connector status=EXPIRED" "the node is EXPIRED (not ONLINE, not merely OFFLINE)"
while [ "$(date -u +%s)" -le $((NOT_AFTER + 1)) ]; do sleep 0.2; done
run probe session "${P[@]}" --until welcome --duration 5000
[ "$RUN_STATUS" -ne 0 ]; check "the expired certificate opens no new session (exit $RUN_STATUS)" $?
! grep -qF '"type":"welcome"' <<<"$RUN_OUT"; check "and is never welcomed" $?

# ---- a node that renews over its session keeps it ------------------------------------
# The renewal's CSR proves the new key over the stream the old key opened:
# the session now stands for the new certificate and lives past the old one.
mkdir -p "$T/m"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name n2 --address 127.0.0.1)" --role connector --name n2 \
  --address 127.0.0.1:7444 --out "$T/m"
expect_status 0 "node n2 enrolls"
FIRST_NOT_AFTER=$(date -u -d "$("$ZTR_TEST_BIN/ztr-pki" inspect "$T/m/cert.pem" | tr ' ' '\n' |
  sed -n 's/^not_after=//p')" +%s 2>/dev/null)
sleep 7   # renewed 7 s later, the new certificate ends 7 s after the first
"$ZTR_TEST_BIN/../tests/tools/ctl_probe" session --controller "$CTL_ADDR" --trust-domain example.org \
  --role connector --dir "$T/m" --renew --interval 300 --duration 60000 >"$T/renewing.out" 2>&1 &
RENEWING=$!; E2E_PIDS+=("$RENEWING")
wait_for_line "$T/renewing.out" '"type":"renewed"' 10
check "n2 renews over its session" $?
while [ "$(date -u +%s)" -le $((FIRST_NOT_AFTER + 2)) ]; do sleep 0.2; done
kill -0 "$RENEWING" 2>/dev/null && ! grep -qF "closed:" "$T/renewing.out"
check "its session outlives the certificate it opened with" $?
run ctl node list
expect_out_has "name=n2 role=connector status=ONLINE" "and n2 stays ONLINE"
kill "$RENEWING" 2>/dev/null; wait "$RENEWING" 2>/dev/null

stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0 (got $STOP_STATUS)" $?
finish
