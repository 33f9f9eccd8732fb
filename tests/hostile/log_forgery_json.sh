#!/usr/bin/env bash
# Attack: forge log fields through a name, against LOG_FORMAT=json. As in
# log_forgery.sh, an attacker without a token enrolls under names built to
# close the JSON string early and add keys (a fake level, a fake peer), to
# start a second object on a new line, or to smuggle control bytes into a
# log shipper (invalid UTF-8 never leaves the client's JSON encoder; the
# logger's own handling of it is tests/unit/test_log.c's). Every value is escaped: each line is
# one JSON object with exactly the controller's own keys, the name comes
# back byte for byte as the one "name" value, and no forged object appears.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
LOG="$T/ctl.json.log"
start_json_controller "$LOG" "$T/ctl"
port="$(json_start_value "$LOG" control_port)"
[ -n "$port" ]; check "its start line is JSON with a control_port" $?
CA="$T/ctl/ca/ca-1.crt"

names=(
  'x peer=10.6.6.6 role=controller'
  'a","peer":"10.6.6.6","level":"error'
  $'b"}\n{"ts":"2026-01-01","level":"error","msg":"forged'
  'c\'
  $'d\x01\x1b[2J\x7f\r\tend'
)
for name in "${names[@]}"; do
  before=$(count_lines "$LOG" '"msg":"enrollment denied"')
  run probe enroll --controller "127.0.0.1:$port" --ca "$CA" --trust-domain example.org \
    --token 00000000000000000000000000000000.00 --role connector --name "$name" --out "$T/p"
  expect_status 1 "enrollment with a forged name is refused"
  for _ in $(seq 1 40); do
    [ "$(count_lines "$LOG" '"msg":"enrollment denied"')" -gt "$before" ] && break
    sleep 0.05
  done
  shown="$(printf %q "$name")"
  # The last denial line: one object, exactly these keys, the name intact.
  python3 - "$LOG" "$name" <<'PY'
import json, sys
raw = sys.argv[2].encode("utf-8", "surrogateescape")
want = raw.decode("utf-8", "replace")
lines = [l for l in open(sys.argv[1], "rb").read().split(b"\n") if b'"msg":"enrollment denied"' in l]
o = json.loads(lines[-1].decode("utf-8"))
assert list(o) == ["ts", "level", "msg", "reason", "detail", "role", "name", "peer"], list(o)
assert o["level"] == "warn" and o["role"] == "connector", o
assert o["name"] == want, (o["name"], want)
assert o["peer"].startswith("127.0.0.1:"), o["peer"]
PY
  check "name $shown: one JSON object with only the controller's keys, the name intact" $?
done
python3 - "$LOG" <<'PY'
import json, sys
for line in open(sys.argv[1], "rb").read().split(b"\n"):
    if not line:
        continue
    o = json.loads(line.decode("utf-8"))
    assert isinstance(o, dict) and list(o)[:3] == ["ts", "level", "msg"], line
    assert o["msg"] != "forged" and not o["ts"].startswith("2026-01-01"), line
PY
check "every line of the log is one JSON object; no forged one among them" $?
! grep -q $'[\x01\x1b\x7f]' "$LOG"; check "no raw control byte reaches the log" $?
finish
