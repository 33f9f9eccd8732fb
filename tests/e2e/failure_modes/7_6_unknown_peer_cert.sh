#!/usr/bin/env bash
# Failure mode 7.6 (seed 003's "401 even with a valid cert"): a link attempt
# with a certificate A does not know — signed by a CA that is no peer's, or
# naming a trust domain that is no peer's — is refused at the TLS handshake
# (`federation handshake refused` with the reason) and counted
# (ztr_federation_links_refused_total). Fix: accept again (propose, accept)
# so that A holds the peer's bundle; or revoke the stale peer.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"; . "$(dirname "$0")/fm_helpers.sh"
. "$(dirname "$0")/../fed_lib.sh"
fm_mode 7.6 "Link refused: certificate of an unknown peer" "federation handshake refused"
fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 || exit 1
T="$E2E_TMP"
foreign_cert "$T/evil" evil.example; check "a controller certificate of nobody's CA" $?
run fed_peer link --addr "$A_FED" --ca "$A_STATE/ca/ca-1.crt" --cert "$T/evil/leaf.pem" \
  --key "$T/evil/leaf.key"
expect_status 1 "the link attempt is refused"
wait_for_line "$A_LOG" 'msg="federation handshake refused"' 5
fm_seen "$A_LOG"
grep -q 'msg="federation handshake refused" source=127.0.0.1:[0-9]* reason="x509: certificate signed by unknown authority"' "$A_LOG"
check "the reason: unknown authority" $?
run curl -s "$A_HEALTH/metrics"
grep -q '^ztr_federation_links_refused_total [1-9]' <<<"$RUN_OUT"
check "ztr_federation_links_refused_total counts it" $?
fed_stop_all
fm_trim
fm_finish
