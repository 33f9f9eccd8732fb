#!/usr/bin/env bash
# Attack: hide or forge a log line with raw bytes, in both LOG_FORMATs.
# Anyone who reaches the admin port may send an HTTP method of any bytes up
# to the first space; the controller logs a refused request's method
# (msg="admin request refused" method=...). The methods carry bytes that are
# not UTF-8 (journald stores such a line as a blob and journalctl prints
# "[blob data]" in its place; a strict shipper drops it; a lenient decoder
# reads the overlong C0 A2 as a quote), terminal escapes, a C1 control that
# some readers take for a line break, a quote and key=value. Every value is
# escaped: each line is valid UTF-8 without a raw control character and
# keeps exactly its own fields; logfmt shows such a byte as '?', json as
# \u00XX or U+FFFD. A tunneler's refused SOCKS5 stream, whose line carries
# the client's host name, keeps every field key=value too.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"

methods=(
  $'\xff\xfe\xc0\xa2x=y'
  $'A\x1b[2J\x07\x01\x7fB'
  $'G\xc2\x85ET'
  $'P"level=error"peer=10.6.6.6\\'
  $'\xe2\x9c\x93\xed\xa0\x80\xf4\x90\x80\x80'
)

# send_method HOST:PORT METHOD: one HTTP request without a token; prints the
# status code.
send_method() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
method = sys.argv[2].encode("utf-8", "surrogateescape")
s = socket.create_connection((host, int(port)), timeout=5)
s.sendall(method + b" /api/admin/nodes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print(s.recv(64).split(b" ")[1].decode())
PY
}

# check_logfmt LOG KEYS: every line of LOG is valid UTF-8, holds no control
# character, starts with ts= and is made of key=value fields only; the
# lines with msg=MSG have exactly KEYS.
check_logfmt() {
  python3 - "$@" <<'PY'
import re, sys
text = open(sys.argv[1], "rb").read().decode("utf-8")     # strict
msg, keys = sys.argv[2], sys.argv[3].split()
field = re.compile(r'([a-z_0-9]+)=("(?:[^"\\]|\\.)*"|[^ "\\=]*)(?: |$)')
seen = 0
for line in text.split("\n"):
    if not line:
        continue
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in line), repr(line)
    got, values, at = [], {}, 0
    while at < len(line):
        m = field.match(line, at)
        assert m, "not key=value at %d: %r" % (at, line)
        got.append(m.group(1)); values[m.group(1)] = m.group(2); at = m.end()
    assert got[:3] == ["ts", "level", "msg"], repr(line)
    if values["msg"] == '"%s"' % msg:
        assert got == keys, (got, line)
        seen += 1
assert seen > 0, "no %s line" % msg
PY
}

# ---- logfmt ------------------------------------------------------------------
start_controller ctl || exit 1
admin="${ADMIN_URL#http://}"
for method in "${methods[@]}"; do
  shown="$(printf %q "$method")"
  run send_method "$admin" "$method"
  expect_out 401 "method $shown: refused"
done
wait_for_re "$CTL_LOG" 'msg="admin request refused"' 5
for _ in $(seq 1 40); do
  [ "$(count_lines "$CTL_LOG" 'msg="admin request refused"')" -ge "${#methods[@]}" ] && break
  sleep 0.05
done
run check_logfmt "$CTL_LOG" "admin request refused" "ts level msg method reason"
[ "$RUN_STATUS" -eq 0 ]
check "logfmt: every line valid UTF-8, no raw control, key=value fields only, the refusals with their own fields ($RUN_ERR)" $?
[ "$(count_lines "$CTL_LOG" 'msg="admin request refused"')" -eq "${#methods[@]}" ]
check "logfmt: one refusal line per request" $?
stop_controller

# ---- json --------------------------------------------------------------------
LOG="$T/ctl.json.log"
start_json_controller "$LOG" "$T/ctl-json"
port="$(json_start_value "$LOG" admin_port)"
for method in "${methods[@]}"; do
  shown="$(printf %q "$method")"
  before=$(count_lines "$LOG" '"msg":"admin request refused"')
  run send_method "127.0.0.1:$port" "$method"
  expect_out 401 "json, method $shown: refused"
  for _ in $(seq 1 40); do
    [ "$(count_lines "$LOG" '"msg":"admin request refused"')" -gt "$before" ] && break
    sleep 0.05
  done
  python3 - "$LOG" "$method" <<'PY'
import json, sys
want = sys.argv[2].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
lines = [l for l in open(sys.argv[1], "rb").read().split(b"\n") if b'"msg":"admin request refused"' in l]
o = json.loads(lines[-1].decode("utf-8"))
assert list(o) == ["ts", "level", "msg", "method", "reason"], list(o)
assert o["method"] == want and o["reason"] == "unauthorized", (o, want)
PY
  check "json, method $shown: one object with only its keys, the method as one value" $?
done
python3 - "$LOG" <<'PY'
import json, sys
for line in open(sys.argv[1], "rb").read().split(b"\n"):
    if not line:
        continue
    text = line.decode("utf-8")            # strict
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in text), repr(text)
    o = json.loads(text)
    assert list(o)[:3] == ["ts", "level", "msg"], line
PY
check "json: every line is one object in valid UTF-8 without a raw control character" $?

# ---- a tunneler's refused SOCKS5 stream (logfmt) ------------------------------
start_controller ctl2 || exit 1
token=$(ctl token create --role tunneler --name laptop) || exit 1
SOCKS=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$token" SOCKS5_LISTEN="127.0.0.1:$SOCKS" || exit 1
wait_for_state ONLINE 15
check "a tunneler with SOCKS5 is ONLINE" $?
python3 - "$SOCKS" <<'PY'
import socket, sys
name = b'x"level=error"peer=10.6.6.6\\'
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"\x05\x01\x00"); s.recv(2)
s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x50"); s.recv(10)
PY
wait_for_line "$AGENT_LOG" 'msg="stream failed"' 5
run check_logfmt "$AGENT_LOG" "stream failed" "ts level msg client resource reason socks5_reply"
[ "$RUN_STATUS" -eq 0 ]
check "tunneler: the refused stream's line is key=value fields only, exactly its own ($RUN_ERR)" $?
stop_agent
stop_controller
finish
