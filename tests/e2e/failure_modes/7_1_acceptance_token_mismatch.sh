#!/usr/bin/env bash
# Failure mode 7.1 (seed 003): the accept returns `acceptance_token does not
# match stored digest` — a typo, a token already used (single use: the digest
# is cleared by the first accept), or an expired one. The acceptor sees the
# one text; the proposer's log says which it was. Fix: a new token on A
# (`controller federation token --peer NAME`, or propose again), handed over
# at once.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../fed_lib.sh"
fm_mode 7.1 "Accept returns acceptance_token does not match stored digest" \
  "acceptance_token does not match stored digest"
fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 || exit 1
fed_start B b.example || exit 1
fed_start C c.example || exit 1
T="$E2E_TMP"

# A typo: one character of the token changed on the way.
on A federation propose --name b --ttl 1h >"$T/token"
sed 's/\(ztrfed1\.[0-9a-f]*\.\)./\1Q/' "$T/token" >"$T/typo"
cmp -s "$T/token" "$T/typo" || sed -i 's/\(ztrfed1\.[0-9a-f]*\.\)./\1R/' "$T/typo"
run on B federation accept --url "$A_FED" --name a --token-file "$T/typo"
expect_status 1 "a mistyped token is refused"
expect_err_has "acceptance_token does not match stored digest" "B is told so"
fm_seen_text "$RUN_ERR"
wait_for_line "$A_LOG" 'reason="token does not match (typo)"' 5
check "A's log says it was a typo" $?
[ "$(peer_state A b)" = proposed ]; check "the peer is still proposed" $?

# Already used: B accepts; the same token again (C) is refused.
run on B federation accept --url "$A_FED" --name a --token-file "$T/token"
expect_status 0 "the real token is accepted"
run on C federation accept --url "$A_FED" --name a --token-file "$T/token"
expect_status 1 "the used token is refused"
expect_err_has "acceptance_token does not match stored digest" "C is told the same text"
wait_for_line "$A_LOG" 'reason="token already used"' 5
check "A's log says it was already used" $?

# Expired.
on A federation propose --name c --ttl 1s >"$T/short"
sleep 1.3
run on C federation accept --url "$A_FED" --name a --token-file "$T/short"
expect_status 1 "the expired token is refused"
expect_err_has "acceptance_token does not match stored digest" "C is told the same text"
wait_for_line "$A_LOG" 'reason="token expired"' 5
check "A's log says it expired" $?
run curl -s "$A_HEALTH/metrics"
grep -q '^ztr_federation_accept_denied_total 3$' <<<"$RUN_OUT"
check "ztr_federation_accept_denied_total counts the three" $?

# The fix: a new token (it replaces the expired one), handed over at once.
on A federation token --peer c --ttl 1h >"$T/fresh"
run on C federation accept --url "$A_FED" --name a --token-file "$T/fresh"
expect_status 0 "a fresh token is accepted"
wait_peer_state A c active 10; check "c becomes active" $?
grep -F "$(cut -d. -f3 "$T/token")" "$A_LOG" "$B_LOG" "$C_LOG" >/dev/null
[ $? -ne 0 ]; check "no token secret in any log" $?
fed_stop_all
fm_trim
fm_finish
