#!/usr/bin/env bash
# Attack: hold the controller's and a connector's listeners with connections
# that never finish (or never get past) a TLS handshake, and try enrollment
# tokens in a loop. Each connection costs a descriptor and memory, and a
# handshake costs CPU; nothing bounded what one address could hold. Now:
# - one source address (IPv4, IPv6 /64) holds at most HANDSHAKES_PER_SOURCE
#   unauthenticated control connections (handshake, enroll, before hello);
#   more are closed at accept, counted, and logged (rate-limited); another
#   source still enrolls and connects;
# - a connector closes a source's connections past its own
#   HANDSHAKES_PER_SOURCE handshakes in progress, and a tunneler elsewhere
#   still relays;
# - past ENROLL_FAILURES_PER_SOURCE denied enrollments in a minute, a
#   source's enrollments are refused with rate_limited without reading the
#   token (a valid token too), while other sources enroll;
# - a node that starts more than HELLOS_PER_NODE sessions in a minute is
#   refused at hello with rate_limited.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl HANDSHAKES_PER_SOURCE=8 ENROLL_FAILURES_PER_SOURCE=5 HELLOS_PER_NODE=3 ||
  exit 1
CA="$CTL_STATE/ca/ca-1.crt"

# hold SRC ADDR N SECONDS: opens N TCP connections from SRC to ADDR, sends
# nothing, and prints how many the server closed within 2 s; keeps the rest
# open for SECONDS (in the background, the caller waits for "held").
hold() {
  python3 - "$@" <<'PY'
import socket, sys, time, select
src, addr, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
host, port = addr.rsplit(":", 1)
socks = []
for _ in range(n):
    s = socket.socket()
    s.bind((src, 0))
    s.connect((host, int(port)))
    socks.append(s)
closed = set()
deadline = time.time() + 2
while time.time() < deadline:
    r, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.1)
    for s in r:
        try:
            if s.recv(1) == b"":
                closed.add(s)
        except OSError:
            closed.add(s)
print(len(closed), flush=True)
print("held", flush=True)
time.sleep(secs)
PY
}

# ---- the controller: unauthenticated connections per source ----------------------
hold 127.0.0.2 "$CTL_ADDR" 20 8 >"$T/ctl_hold" &
HOLDER=$!
wait_for_line "$T/ctl_hold" held 10
closed=$(head -1 "$T/ctl_hold")
[ "$closed" -ge 12 ]; check "the controller closes the connections past 8 from one source ($closed of 20)" $?
wait_for_line "$CTL_LOG" 'msg="control connection refused"' 5
check "and logs why" $?
grep -F 'msg="control connection refused"' "$CTL_LOG" | grep -qF \
  'reason="too many unauthenticated connections from this source"'
check "the log line names the source limit" $?
[ "$(count_lines "$CTL_LOG" 'msg="control connection refused"')" -le 5 ]
check "refusals are rate-limited in the log" $?
metric_at_least "$HEALTH_URL" ztr_controller_connections_refused_total 12
check "ztr_controller_connections_refused_total counts them" $?
mkdir -p "$T/dc1"
run probe enroll --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org \
  --token "$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  --role connector --name dc1 --address 127.0.0.1 --out "$T/dc1"
expect_status 0 "another source enrolls while the flood holds its connections"
kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null

# Once the flood lets go (the controller has seen the closes), the same
# source is served again.
ok=1
for _ in 1 2 3 4 5; do
  sleep 0.5
  [ "$(hold 127.0.0.2 "$CTL_ADDR" 8 0 2>/dev/null | head -1)" = 0 ] && { ok=0; break; }
done
check "after the flood ends the source gets its 8 connections again" $ok

# ---- the controller: sessions started per node -----------------------------------
P=(--controller "$CTL_ADDR" --trust-domain example.org --role connector --dir "$T/dc1")
welcomed=0
for i in 1 2 3; do
  grep -qF '"type":"welcome"' <<<"$(probe session "${P[@]}" --until welcome --duration 5000)" &&
    welcomed=$((welcomed + 1))
done
[ "$welcomed" -eq 3 ]; check "a node starts 3 sessions in a minute ($welcomed welcomed)" $?
run probe session "${P[@]}" --until welcome --duration 5000
expect_out_has '"code":"rate_limited"' "the fourth is refused at hello with rate_limited"
grep -qF '"type":"welcome"' <<<"$RUN_OUT"; [ $? -ne 0 ]; check "and never welcomed" $?
wait_for_line "$CTL_LOG" 'reason="too many sessions started"' 5
check "the controller logs the node and its limit" $?
metric_at_least "$HEALTH_URL" ztr_controller_hellos_rate_limited_total 1
check "ztr_controller_hellos_rate_limited_total counts it" $?

# ---- a connector: handshakes in progress per source ------------------------------
start_agent connector dc2 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc2 \
  --address 127.0.0.1)" HANDSHAKES_PER_SOURCE=4
check "connector dc2 starts" $?
keep_agent DC2
wait_for_line "$DC2_LOG" 'msg="data listener started"' 10
DATA="127.0.0.1:$(grep -F 'msg="data listener started"' "$DC2_LOG" | tail -1 | tr ' ' '\n' |
  sed -n 's/^port=//p')"
hold 127.0.0.3 "$DATA" 10 6 >"$T/dp_hold" &
HOLDER=$!
wait_for_line "$T/dp_hold" held 10
closed=$(head -1 "$T/dp_hold")
[ "$closed" -ge 6 ]; check "the connector closes the connections past 4 from one source ($closed of 10)" $?
grep -F 'msg="data session refused"' "$DC2_LOG" | grep -qF 'reason="too many handshakes from this source"'
check "and logs why" $?
metric_at_least "$DC2_URL" ztr_data_connections_refused_total 6
check "ztr_data_connections_refused_total counts them" $?
# Another source still completes a handshake while the flood holds.
echo | timeout 5 openssl s_client -connect "$DATA" -alpn ztr-data/1 -tls1_3 \
  -CAfile "$CA" >"$T/s_client" 2>&1
grep -qE '^(New|Protocol).*TLSv1.3' "$T/s_client"
check "another source completes its handshake with the connector" $?
kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null
# ---- the controller: denied enrollments per source -------------------------------
# The probe connects from 127.0.0.1, so the bad tokens come from there (the
# enrollment of dc1 above was no denial: it does not count).
bad_enroll() {
  probe raw --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org \
    --send '{"type":"enroll","token":"0000000000000000.0000000000000000000000000000000000000000000000000000000000000000","role":"tunneler","name":"x","csr":"x"}' 2>&1
}
denied=0
for i in 1 2 3 4 5; do
  grep -qF '"code":"invalid_token"' <<<"$(bad_enroll)" && denied=$((denied + 1))
done
[ "$denied" -eq 5 ]; check "five bad tokens are denied as invalid ($denied)" $?
grep -qF '"code":"rate_limited"' <<<"$(bad_enroll)"
check "the sixth attempt from that address is refused with rate_limited" $?
mkdir -p "$T/lap"
run probe enroll --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org \
  --token "$(ctl token create --role tunneler --name lap)" --role tunneler --name lap --out "$T/lap"
[ "$RUN_STATUS" -ne 0 ]; check "even a valid token is not read from that address this minute" $?
grep -qF "too many denied enrollments from this address" <<<"$RUN_OUT$RUN_ERR"
check "the refusal says why and when to retry" $?
ctl token list | grep -q 'name=lap .*uses_left=1'
check "the valid token was not spent" $?
wait_for_line "$CTL_LOG" 'reason="too many denied enrollments from this address"' 5
check "the controller logs the rate limit" $?
metric_at_least "$HEALTH_URL" ztr_controller_enrollment_rate_limited_total 2
check "ztr_controller_enrollment_rate_limited_total counts them" $?

finish
