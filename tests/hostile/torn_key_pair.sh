#!/usr/bin/env bash
# Attack (or accident): a crash in the middle of a key and certificate
# change. An agent that dies between writing its new key and its new
# certificate used to restart with a new key beside the old certificate, a
# pair that can never complete a handshake; a controller that died between
# a CA's key and its certificate could not start again (its key file
# existed, the exclusive create failed on every start). Now the agent
# stages the pair (key.pem.new, then cert.pem.new: the commit point) and
# settles it on start; the controller removes CA files state.json never
# committed and makes the CA afresh.
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
check "the connector enrolls" $?
wait_for_state ONLINE 15; check "and comes online" $?
stop_agent
dir="$AGENT_STATE"

# The crash after the commit point, before the renames: key.pem is a key
# that belongs to no certificate, the matching pair is staged.
mv "$dir/key.pem" "$dir/key.pem.new"
mv "$dir/cert.pem" "$dir/cert.pem.new"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/key.pem" 2>/dev/null
start_agent connector dc1
check "the connector restarts without a token" $?
wait_for_state ONLINE 15; check "with a matching pair: ONLINE" $?
grep -qF 'msg="identity change interrupted by a crash: completed"' "$AGENT_LOG"
check "the completed change is logged" $?
[ ! -e "$dir/key.pem.new" ] && [ ! -e "$dir/cert.pem.new" ]
check "nothing stays staged" $?
expect_file_mode "$dir/key.pem" 600 "the key stays private"
stop_agent

# The crash before the commit point: a staged key alone is dropped.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/key.pem.new" 2>/dev/null
start_agent connector dc1
wait_for_state ONLINE 15; check "a staged key alone is dropped: ONLINE on the old pair" $?
grep -qF 'msg="identity change interrupted by a crash: discarded, previous identity kept"' "$AGENT_LOG"
check "the discarded change is logged" $?
stop_agent
stop_controller

# The controller's CA: a key written, the crash before its certificate and
# before state.json committed it.
state="$E2E_TMP/ctl2"
mkdir -p "$state/ca" && chmod 700 "$state" "$state/ca"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$state/ca/ca-1.key" 2>/dev/null
start_controller ctl2
check "a controller with an uncommitted CA key starts" $?
grep -qF 'msg="CA files left by an interrupted creation removed" ca=1' "$CTL_LOG"
check "the leftover is removed and logged" $?
openssl x509 -in "$state/ca/ca-1.crt" -noout 2>/dev/null
check "and the CA is made afresh" $?
finish
