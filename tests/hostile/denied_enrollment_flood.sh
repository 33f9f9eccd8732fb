#!/usr/bin/env bash
# Attack: grow the controller's journal and database without a credential.
# Enrollment is open to anyone who can reach the control port, and every
# denial used to write a warn line and an events row. An unauthenticated
# client looping on a bad token (2000 times here) now gets at most 20
# `enrollment denied` lines a second (the rest are counted into one
# `enrollment denied lines suppressed` summary when lines resume) and at
# most 30 `denied` rows a minute; the metric counts every denial, and the
# controller keeps serving. The events table is also bounded by count and
# age (EVENT_MAX, EVENT_RETENTION), pruned by the sweep in batches.
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl ENROLL_FAILURES_PER_SOURCE=1000000 || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
FLOOD=2000

# One process, one TLS connection per attempt: enroll with a bad token.
flood() {
  python3 - "$CTL_ADDR" "$CA" "$1" <<'PY'
import json, socket, ssl, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(sys.argv[2])
ctx.set_alpn_protocols(["ztr-ctl/1"])
msg = json.dumps({"type": "enroll", "token": "0" * 16 + "." + "0" * 64, "role": "tunneler",
                  "name": "flood", "csr": "x"}).encode()
refused = 0
for _ in range(int(sys.argv[3])):
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(struct.pack(">I", len(msg)) + msg)
            head = b""
            while len(head) < 4:
                chunk = tls.recv(4 - len(head))
                if not chunk:
                    break
                head += chunk
            if len(head) == 4:
                body = b""
                want = struct.unpack(">I", head)[0]
                while len(body) < want:
                    chunk = tls.recv(want - len(body))
                    if not chunk:
                        break
                    body += chunk
                if json.loads(body).get("code") == "invalid_token":
                    refused += 1
print(refused)
PY
}

denied_rows() { ctl events --limit 100000 | grep -c 'kind=denied'; }

started=$(date +%s)
refused=$(flood "$FLOOD")
elapsed=$(( $(date +%s) - started + 1 ))
[ "$refused" = "$FLOOD" ]; check "every bad-token enrollment is refused ($refused of $FLOOD)" $?

lines=$(count_lines "$CTL_LOG" 'msg="enrollment denied"')
[ "$lines" -le $((20 * (elapsed + 1))) ] && [ "$lines" -lt "$FLOOD" ]
check "the log holds a bounded number of enrollment denied lines ($lines in ${elapsed}s)" $?
rows=$(denied_rows)
[ "$rows" -le $((30 * (elapsed / 60 + 2))) ]
check "the events table grew by a bounded number of rows ($rows)" $?
grep -qE "^ztr_controller_enrollment_denied_total $FLOOD\$" <<<"$(curl -s "$HEALTH_URL/metrics")"
check "ztr_controller_enrollment_denied_total counts every denial" $?

# Once the flood is over, the next denial is logged with a summary of
# what was left out: together they account for every denial.
sleep 1.1
flood 1 >/dev/null
wait_for_line "$CTL_LOG" 'msg="enrollment denied lines suppressed"' 5
check "a suppressed=N summary line when denials are logged again" $?
suppressed=$(grep -F 'msg="enrollment denied lines suppressed"' "$CTL_LOG" |
  sed -n 's/.*suppressed=\([0-9]*\).*/\1/p' | awk '{n += $1} END {print n + 0}')
lines=$(count_lines "$CTL_LOG" 'msg="enrollment denied"')
[ $((lines + suppressed)) -eq $((FLOOD + 1)) ]
check "logged ($lines) + suppressed ($suppressed) = every denial ($((FLOOD + 1)))" $?

# Still serving: a real enrollment goes through.
mkdir -p "$E2E_TMP/dc1"
run probe enroll --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org \
  --token "$(ctl token create --role connector --name dc1 --address 127.0.0.1)" --role connector --name dc1 \
  --out "$E2E_TMP/dc1"
expect_status 0 "the controller still enrolls a node after the flood"

# The table is bounded by count too: a lower EVENT_MAX takes effect at
# the next sweeps (300 ms here).
stop_controller
start_controller ctl CONTROLLER_LISTEN="$CTL_ADDR" EVENT_MAX=10 || exit 1
ok=1
for _ in $(seq 1 50); do
  [ "$(ctl events --limit 100000 | grep -c 'kind=')" -le 10 ] && { ok=0; break; }
  sleep 0.2
done
check "EVENT_MAX=10 prunes the events table to 10 rows" $ok
finish
