#!/usr/bin/env bash
# Failure mode 7.2 (seed 003): the accept carries no acceptance_token while
# A's peer row has a digest: `acceptance_token required (peer has
# acceptance_token_digest set)`. ztr has no "drill mode": every proposal has
# a token, so a token-less accept is always refused. Fix: send the token
# (`controller federation accept --token-file`, or FEDERATION_TOKEN).
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../fed_lib.sh"
fm_mode 7.2 "Accept fails with acceptance_token required" \
  "acceptance_token required (peer has acceptance_token_digest set)"
fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 || exit 1
fed_start B b.example || exit 1
on A federation propose --name b >"$E2E_TMP/token"

run fed_peer accept --addr "$A_FED" --token-file "$E2E_TMP/token" --omit-token
expect_status 1 "an accept without a token is refused"
fm_seen_text "$RUN_OUT"
wait_for_line "$A_LOG" 'reason="no token sent"' 5
check "A's log says no token was sent" $?
[ "$(peer_state A b)" = proposed ]; check "the peer is still proposed" $?
[ "$(peer_field A b token_pending)" = True ]; check "the digest is still set" $?

# The CLI never sends an accept without one.
run env -u FEDERATION_TOKEN "$ZTR_TEST_BIN/controller" federation accept --url "$A_FED"
expect_status 2 "the CLI wants the token"
expect_err_has "it is a secret and never a flag" "and says where it goes"

# The fix: the same accept with the token.
run env FEDERATION_TOKEN="$(cat "$E2E_TMP/token")" ADMIN_URL="$B_URL" \
  "$ZTR_TEST_BIN/controller" federation accept --url "$A_FED" --name a
expect_status 0 "the accept with the token (FEDERATION_TOKEN) succeeds"
wait_peer_state A b active 10; check "b becomes active" $?
fed_stop_all
fm_trim
fm_finish
