#!/usr/bin/env bash
# Attack: guess a federation acceptance token. Anyone who can reach the
# federation listener may try an accept, and the token's shape (peer id,
# trust domain, the pinned CA) may have leaked without its secret. Each
# refusal counts against the source address; past
# FEDERATION_ACCEPT_FAILURES_PER_SOURCE (here 5) a minute, accepts from it
# are answered rate_limited without looking at the token — even the right
# one — until the minute ends. Guessing 256 bits at 5 a minute is hopeless;
# the metric counts the refusals and the peer stays proposed.
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/../e2e/fed_lib.sh"
fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 FEDERATION_ACCEPT_FAILURES_PER_SOURCE=5 ||
  exit 1
on A federation propose --name b >"$E2E_TMP/token"
run fed_peer accept --addr "$A_FED" --token-file "$E2E_TMP/token" --tamper --count 40
expect_status 1 "no guess is accepted"
[ "$(grep -c 'acceptance_token does not match stored digest' <<<"$RUN_OUT")" -eq 5 ]
check "the first 5 guesses are checked and refused" $?
[ "$(grep -c '"code": "rate_limited"' <<<"$RUN_OUT")" -eq 35 ]
check "the other 35 are refused unread (rate_limited)" $?
grep -q 'too many failed accepts from this address; retry in' <<<"$RUN_OUT"
check "the refusal says when to retry" $?
# Even the right token is refused from that address this minute.
run fed_peer accept --addr "$A_FED" --token-file "$E2E_TMP/token"
expect_status 1 "the right token from the same address waits too"
expect_out_has '"code": "rate_limited"' "rate limited"
[ "$(peer_state A b)" = proposed ]; check "the peer is still proposed" $?
[ "$(peer_field A b token_pending)" = True ]; check "its token is still valid" $?
run curl -s "$A_HEALTH/metrics"
grep -q '^ztr_federation_accept_denied_total 5$' <<<"$RUN_OUT"
check "ztr_federation_accept_denied_total 5" $?
grep -q '^ztr_federation_accept_rate_limited_total 36$' <<<"$RUN_OUT"
check "ztr_federation_accept_rate_limited_total 36" $?
fed_stop_all
finish
