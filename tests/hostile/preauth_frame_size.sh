#!/usr/bin/env bash
# Attack: a peer with no client certificate (anyone who can reach the
# control port) sends a frame header announcing 1 MiB and then nothing.
# Before authentication the controller accepts frames of at most 16 KiB: it
# closes the session on the header alone, without allocating the payload
# and without waiting for it, logs why, and a real enrollment still works.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"

# s_client sends what it reads from stdin inside TLS; its stdin stays open
# for 5 s, so an exit before that means the controller closed the session.
attack() { # attack HEX-HEADER: sends those 4 bytes, prints the seconds until the close
  local start end
  start=$(date +%s.%N)
  timeout 10 openssl s_client -quiet -connect "$CTL_ADDR" -alpn ztr-ctl/1 -CAfile "$CA" \
    -verify_return_error < <(printf "$1"; sleep 5) >"$T/s_client.out" 2>&1
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

secs=$(attack '\x00\x10\x00\x00')   # 1 MiB
awk -v s="$secs" 'BEGIN { exit !(s < 4) }'
check "a 1 MiB header from an unauthenticated peer is closed at once (after ${secs}s, not after the payload)" $?
wait_for_line "$CTL_LOG" 'reason="frame length 1048576 outside 1..16384 bytes"' 5
check "controller logs the refused length and the pre-authentication bound" $?
grep -F 'msg="control session closed"' "$CTL_LOG" | grep -qF 'frame length 1048576 outside 1..16384'
check "the log line is the control session's close" $?

# Just above the bound: refused too; the bound is not an accident of 1 MiB.
before=$(count_lines "$CTL_LOG" 'outside 1..16384 bytes')
attack '\x00\x00\x40\x01' >/dev/null   # 16 KiB + 1
wait_for_line "$CTL_LOG" 'reason="frame length 16385 outside 1..16384 bytes"' 5
check "16 KiB + 1 is refused before authentication" $?

# The bound leaves room for every real enrollment.
tok=$(ctl token create --role connector --name dc1 --address 127.0.0.1)
mkdir -p "$T/dc1"
run probe enroll --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org --token "$tok" \
  --role connector --name dc1 --address 127.0.0.1:7444 --out "$T/dc1"
expect_status 0 "a real enrollment fits under the bound"
# Authenticated sessions keep the protocol's 1 MiB bound.
run probe session --controller "$CTL_ADDR" --dir "$T/dc1" --trust-domain example.org \
  --role connector --until welcome
expect_status 0 "an authenticated session says hello"
kill -0 "$CTL_PID" 2>/dev/null; check "controller still running" $?
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0 (got $STOP_STATUS)" $?
finish
