#!/usr/bin/env bash
# Attack: forge log fields through a name. Enrollment is open to anyone who
# can reach the control port, and the controller logs the name an enrolling
# client claims. An attacker without a token picks names that would, written
# raw, add fields to the controller's log line (a fake peer address, a fake
# level), close a quoted value early, or start a second line. Every value is
# escaped: the line keeps exactly its own fields, the name stays one value,
# and the operator's tools (grep, a logfmt reader) see no forged field. The
# names are refused at token creation too (SPIFFE path-segment rules).
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"

# fields LINE: the line's key=value keys in order, quoted values read as a
# logfmt reader does (\" and \\ stay inside the value).
fields() {
  sed -e 's/"\([^"\\]\|\\.\)*"/Q/g' <<<"$1" | tr ' ' '\n' | sed -n 's/^\([a-z_]*\)=.*/\1/p' | tr '\n' ' '
}

names=(
  'x peer=10.6.6.6 role=controller'
  'a" peer="10.6.6.6'
  $'b\nts=2026-01-01T00:00:00.000Z level=error msg="forged"'
  'c\'
)
for name in "${names[@]}"; do
  before=$(count_lines "$CTL_LOG" 'msg="enrollment denied"')
  run probe enroll --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org \
    --token 00000000000000000000000000000000.00 --role connector --name "$name" --out "$E2E_TMP/p"
  expect_status 1 "enrollment with a forged name is refused"
  for _ in $(seq 1 40); do
    [ "$(count_lines "$CTL_LOG" 'msg="enrollment denied"')" -gt "$before" ] && break
    sleep 0.05
  done
  line="$(grep -F 'msg="enrollment denied"' "$CTL_LOG" | tail -1)"
  got="$(fields "$line")" shown="$(printf %q "$name")"
  [ "$got" = "ts level msg reason detail role name peer " ]
  check "name $shown: the line keeps its own fields (got: $got; $line)" $?
  ! grep -q 'peer=10\.6\.6\.6\|level=error' <<<"$(sed -e 's/"\([^"\\]\|\\.\)*"/Q/g' <<<"$line")"
  check "name $shown: no forged field outside a quoted value" $?
done
! grep -q '^b\|^ts=2026-01-01' "$CTL_LOG"
check "no forged line starts in the controller's log" $?
[ "$(grep -c 'msg="forged"' "$CTL_LOG")" -eq 0 ]
check "the forged msg never appears raw" $?

# The same names cannot get a token: a name is one SPIFFE path segment.
for name in 'a"b' 'x peer=10.6.6.6' 'c\' 'd/e'; do
  run ctl token create --role connector --name "$name"
  shown="$(printf %q "$name")"
  [ "$RUN_STATUS" -ne 0 ] && [ -z "$RUN_OUT" ]
  check "token create --name $shown is refused" $?
  expect_err_has "cannot be a SPIFFE ID segment" "the refusal says why"
done
run ctl token create --role connector --name dc1-a.B_2 --address 127.0.0.1
expect_status 0 "a name of a-z A-Z 0-9 . - _ gets a token"
finish
