#!/usr/bin/env bash
# The revocation SLO as an operator sees it: every allowlist change is a
# change id (its version) with the controller's push time; each connector
# reports when it applied it and when the last session it removed closed;
# `controller changes` / GET /api/admin/changes show the fleet-wide times
# and /metrics the histogram ztr_revocation_apply_seconds{phase}.
# Two connectors (pg on dc1, web on dc2; each is told only of the grants
# to what is bound to it), a tunneler holding a stream through each; deny
# pg (the tunneler leaves dc1's list: its session there closes, the one on
# dc2 lives on), then deny web (its session on dc2 closes);
# allow web again and unbind it from dc2 (dc2's list loses it: the stream
# ends).
. "$(dirname "$0")/lib.sh"
# laptop_closes LOG: how many times LOG says laptop's session ended because
# one end no longer lets it be (either end may be first).
LAPTOP_CLOSED='msg="data session closed" spiffe_id=spiffe://example.org/tunneler/laptop reason="(removed from the allowlist|connector removed|tunneler not allowed)"'
laptop_closes() { grep -cE -- "$LAPTOP_CLOSED" "$1"; }
# wait_laptop_closed LOG BEFORE: until LOG has more such lines than BEFORE (5 s).
wait_laptop_closed() {
  for _ in $(seq 100); do [ "$(laptop_closes "$1")" -gt "$2" ] && return 0; sleep 0.05; done
  return 1
}
start_controller ctl || exit 1
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
ctl resource add pg --connector dc1 >/dev/null
ctl resource add web --connector dc2 >/dev/null
for n in 1 2; do
  res=pg; [ "$n" = 2 ] && res=web
  start_agent connector "dc$n" ENROLLMENT_TOKEN="$(ctl token create --role connector --name "dc$n" --address 127.0.0.1)" \
    RESOURCES="$res=127.0.0.1:$ECHO_PORT" || exit 1
  keep_agent "DC$n"
done
ctl allow --tunneler laptop --resource pg >/dev/null
ctl allow --tunneler laptop --resource web >/dev/null
F1=$(free_port); F2=$(free_port)
start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
  FORWARDS="127.0.0.1:$F1=pg,127.0.0.1:$F2=web" SOCKS5_LISTEN=off CONNECTOR_RETRY_MIN=50ms \
  CONNECTOR_RETRY_MAX=100ms || exit 1
wait_through "127.0.0.1:$F1" 100; check "a stream reaches pg through dc1" $?
wait_through "127.0.0.1:$F2" 100; check "a stream reaches web through dc2" $?

run ctl changes --json
expect_status 0 "controller changes --json"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); c=d["changes"][0]; sys.exit(0 if c["applied"]==c["connectors"]==2 and c["complete"] else 1)' "$RUN_OUT"
check "the allow of web was applied by both connectors" $?

# deny pg: pg was laptop's only resource on dc1, so it leaves dc1's list.
tcp_peer hold "127.0.0.1:$F1" 1 30 >"$E2E_TMP/hold1.out" 2>&1 &
H1=$!; E2E_PIDS+=("$H1")
tcp_peer hold "127.0.0.1:$F2" 1 30 >"$E2E_TMP/hold2.out" 2>&1 &
H2=$!; E2E_PIDS+=("$H2")
sleep 1
dc1_closed=$(laptop_closes "$DC1_LOG")
ctl deny --tunneler laptop --resource pg >/dev/null
for _ in $(seq 1 40); do kill -0 "$H1" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$H1" 2>/dev/null; check "deny pg ended the held stream to pg" $?
kill -0 "$H2" 2>/dev/null; check "the stream to web lives on" $?
ok=1
for _ in $(seq 1 40); do
  run ctl changes --limit 1 --json
  python3 -c 'import json,sys; c=json.loads(sys.argv[1])["changes"][0]; sys.exit(0 if c["complete"] and c["applied"]==2 and c["apply_ms"]<1000 else 1)' "$RUN_OUT" &&
    { ok=0; break; }
  sleep 0.05
done
check "deny pg: applied by both connectors within 1 s ($RUN_OUT)" $ok
# (sessions_closed counts the closes a connector saw finish before it
# reported; one that finishes later counts toward its next report.)
# Both ends end it, whichever learns first: dc1 (laptop left its list) or
# the tunneler (dc1 left laptop's connector list).
wait_laptop_closed "$DC1_LOG" "$dc1_closed"
check "laptop's session on dc1 ends" $?

# deny web: the tunneler leaves dc2's list too; its session there closes.
ctl deny --tunneler laptop --resource web >/dev/null
for _ in $(seq 1 40); do kill -0 "$H2" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$H2" 2>/dev/null; check "deny web ended the held stream to web" $?
ok=1
for _ in $(seq 1 40); do
  run ctl changes --limit 1 --json
  python3 -c 'import json,sys; c=json.loads(sys.argv[1])["changes"][0]; sys.exit(0 if c["complete"] and c["apply_ms"]<1000 and c["close_ms"]<1000 else 1)' "$RUN_OUT" &&
    { ok=0; break; }
  sleep 0.05
done
# (sessions_closed is the closes the connectors saw finish while they
# reported; the stream's end above is what the operator's user sees.)
check "deny web: applied by both connectors, removed sessions closed, all within 1 s ($RUN_OUT)" $ok
echo "  last change: $RUN_OUT"

# unbind web from dc2: the grant stands, but dc2 no longer carries web.
ctl allow --tunneler laptop --resource web >/dev/null
wait_through "127.0.0.1:$F2" 100; check "web granted again: a stream reaches it through dc2" $?
tcp_peer hold "127.0.0.1:$F2" 1 30 >"$E2E_TMP/hold3.out" 2>&1 &
H3=$!; E2E_PIDS+=("$H3")
sleep 1
before=$(ctl changes --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["changes"][0]["id"])')
dc2_closed=$(laptop_closes "$DC2_LOG")
ctl resource unbind web --connector dc2 >/dev/null
for _ in $(seq 1 40); do kill -0 "$H3" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$H3" 2>/dev/null; check "unbind web from dc2 ended the held stream to web" $?
# web was laptop's only resource on dc2: laptop leaves dc2's list (and dc2
# laptop's connector list); its session there ends, whichever end is first.
wait_laptop_closed "$DC2_LOG" "$dc2_closed"
check "laptop's session on dc2 ends" $?
ok=1
for _ in $(seq 1 40); do
  run ctl changes --limit 1 --json
  python3 -c 'import json,sys; c=json.loads(sys.argv[1])["changes"][0]; sys.exit(0 if c["id"]>int(sys.argv[2]) and c["complete"] and c["applied"]==2 and c["apply_ms"]<1000 else 1)' "$RUN_OUT" "$before" &&
    { ok=0; break; }
  sleep 0.05
done
check "the unbinding is a change of its own, applied by both connectors within 1 s ($RUN_OUT)" $ok
run tcp_peer check "127.0.0.1:$F2" 1 1K --timeout 3
expect_status 1 "no connector carries web now: a new stream is refused"

run ctl changes --limit 2
expect_status 0 "controller changes (human output)"
[ "$(grep -c '^id=' <<<"$RUN_OUT")" = 2 ]; check "--limit 2 lists two changes, newest first" $?
expect_out_has "connectors=2 applied=2 complete=true" "each line says how many connectors applied it"
run ctl changes --limit 5x
expect_status 2 "a malformed --limit is a usage error"
run curl -s "$HEALTH_URL/metrics"
[ "$(awk '$1 == "ztr_revocation_apply_seconds_count{phase=\"applied\"}" {print $2}' <<<"$RUN_OUT")" -ge 4 ]
check "/metrics: ztr_revocation_apply_seconds{phase=\"applied\"} counted every report" $?
[ "$(awk '$1 == "ztr_revocation_apply_seconds_bucket{phase=\"closed\",le=\"1\"}" {print $2}' <<<"$RUN_OUT")" = \
  "$(awk '$1 == "ztr_revocation_apply_seconds_count{phase=\"closed\"}" {print $2}' <<<"$RUN_OUT")" ]
check "/metrics: the closed phase within 1 s for every report" $?
run curl -s -H "Authorization: Bearer $ADMIN_AUTH_TOKEN" "$ADMIN_URL/api/admin/changes?limit=0"
expect_out_has "must be an integer >= 1" "the admin API refuses limit=0 with a clear error"
finish
