#!/usr/bin/env bash
# Attack: replay an acceptance token after it was used — a copy left in a
# chat history, a shell history or a ticket. The first accept clears the
# digest (single use), so the replay is refused with
# `acceptance_token does not match stored digest` (A's log: `token already
# used`), the peer B accepted keeps its trust domain and bundle, and the
# replaying controller stores nothing.
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/../e2e/fed_lib.sh"
T="$E2E_TMP"
fed_pair || exit 1
wait_peer_state A b active 10; check "b accepted and active" $?
bundle_before="$(peer_field A b bundle | sha256sum)"
fed_start C c.example || exit 1
run on C federation accept --url "$A_FED" --name a --token-file "$T/token"
expect_status 1 "the replayed token is refused"
expect_err_has "acceptance_token does not match stored digest" "with the seed's text"
wait_for_line "$A_LOG" 'reason="token already used"' 5
check "A's log says the token was already used" $?
run fed_peer accept --addr "$A_FED" --token-file "$T/token" --trust-domain c.example
expect_status 1 "a replay by hand is refused the same way"
expect_out_has "acceptance_token does not match stored digest" "same text"
[ "$(peer_field A b trust_domain)" = b.example ]; check "b keeps its trust domain" $?
[ "$(peer_field A b bundle | sha256sum)" = "$bundle_before" ]; check "b keeps its bundle" $?
[ "$(peer_state A b)" = active ]; check "b stays active" $?
run on C federation list
expect_out "" "the replaying controller stored no peer"
fed_stop_all
finish
