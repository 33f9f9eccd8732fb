#!/usr/bin/env bash
# Attack: a node (or a copy of its current key) renews again and again.
# Each renewal is a CA signature, a database write and a history row, and
# the controller used to sign every one. Now a node gets at most 3
# certificates (enrollment included) within a quarter of SVID_TTL; an agent
# needs about two per SVID_TTL. Past that, a renewal is refused with
# `not_allowed` `renewal rate limited, try later`, a warn line and the
# denial counter; the node's certificate stays what it was, and renewing
# works again once the window has passed.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
PKI="$ZTR_TEST_BIN/ztr-pki"
# SVID_TTL=40s: the window is 10 s, short enough to see it pass.
start_controller ctl SVID_TTL=40s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org --role connector --dir "$T/n")
serial() { "$PKI" inspect "$1" | sed -n 's/.*serial=//p'; }

mkdir -p "$T/n"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name n1 --address 127.0.0.1)" --role connector --name n1 \
  --address 127.0.0.1:7444 --out "$T/n"
expect_status 0 "node n1 enrolls (certificate 1)"
for i in 2 3; do
  run probe session "${P[@]}" --renew --until renewed --duration 5000
  expect_out_has '"type":"renewed"' "renewal $i is signed (certificate $i)"
done

# ---- the attack: one more, at once ----------------------------------------------
HELD=$(serial "$T/n/cert.pem")
run probe session "${P[@]}" --renew --until error --duration 5000
expect_out_has "renewal rate limited, try later" "the flood is refused and told why"
! grep -qF '"type":"renewed"' <<<"$RUN_OUT"; check "no certificate for the flood" $?
[ "$(serial "$T/n/cert.pem")" = "$HELD" ]; check "the node keeps its certificate ($HELD)" $?
grep -F 'msg="renewal refused"' "$CTL_LOG" | grep -qF 'reason="rate limited" issued=3 window_s=10'
check "controller warns: renewal refused, rate limited, how many in which window" $?
grep -qE '^ztr_controller_renewal_denied_total [1-9]' <<<"$(curl -s "$HEALTH_URL/metrics")"
check "the refusal is counted" $?

# ---- the window passes ----------------------------------------------------------------
ok=1
for _ in $(seq 30); do
  sleep 1
  run probe session "${P[@]}" --renew --until renewed --duration 5000
  grep -qF '"type":"renewed"' <<<"$RUN_OUT" && { ok=0; break; }
done
check "once the window has passed the node renews again" $ok
kill -0 "$CTL_PID" 2>/dev/null; check "controller still running" $?
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0 (got $STOP_STATUS)" $?
finish
