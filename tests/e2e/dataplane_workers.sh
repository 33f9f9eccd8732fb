#!/usr/bin/env bash
# The data plane on every core: connector and tunneler with WORKERS=2.
# Many parallel streams succeed; /health and /metrics add up every loop;
# with streams held on both connector loops, a renewal of both agents
# (20 s certificates) drops none of them, and an allowlist change resets
# the streams on every loop within 1 s, then closes every session of the
# removed tunneler.
. "$(dirname "$0")/lib.sh"
TTL=20
start_controller ctl SVID_TTL=${TTL}s || exit 1
start_peer echo || exit 1; ECHO_PORT=$PEER_PORT
start_peer http || exit 1; HTTP_PORT=$PEER_PORT
for r in echo web; do ctl resource add "$r" --connector dc1 >/dev/null; done
for bad in 0 65; do
  run_agent connector bad WORKERS=$bad
  expect_status 2 "WORKERS=$bad is refused"
  expect_err_has "env: WORKERS: must be 1..64" "the error names the key and the bounds"
done
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="echo=127.0.0.1:$ECHO_PORT,web=127.0.0.1:$HTTP_PORT" WORKERS=2
check "the connector starts with WORKERS=2" $?
keep_agent DC1
for r in echo web; do ctl allow --tunneler laptop --resource "$r" >/dev/null; done
FWD=$(free_port); FWD_WEB=$(free_port)
TOKEN="$(ctl token create --role tunneler --name laptop)"
TCP_PEER="$ZTR_TEST_BIN/../tests/tools/tcp_peer"

# ---- many parallel streams, counted over every loop -------------------------------------
start_agent tunneler laptop ENROLLMENT_TOKEN="$TOKEN" FORWARDS="127.0.0.1:$FWD=echo,127.0.0.1:$FWD_WEB=web" WORKERS=2
check "the tunneler starts with WORKERS=2" $?
keep_agent LAPTOP
wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
[ "$(count_lines "$DC1_LOG" 'msg="data listener started"')" -eq 2 ]
check "the connector has a data listener per loop" $?
[ "$(count_lines "$LAPTOP_LOG" 'msg="forward listener started"')" -eq 4 ]
check "the tunneler has each forward listener per loop" $?
run "$TCP_PEER" check "127.0.0.1:$FWD" 400 65536 --timeout 60
expect_out_has "ok streams=400" "400 parallel streams through both loops of both agents"
for ((i = 0; i < 100; i++)); do health "$DC1_URL"; [ "$(json_value streams)" = 0 ] && break; sleep 0.05; done
health "$LAPTOP_URL"
[ "$(json_value workers)" = 2 ] && [ "$(json_value sessions)" = 2 ]
check "the tunneler reports 2 workers and a session per loop ($(json_value sessions))" $?
tun_total=$(json_value streams_total)
health "$DC1_URL"
[ "$(json_value workers)" = 2 ]; check "the connector reports 2 workers" $?
[ "$(json_value streams_total)" -ge 400 ] && [ "$(json_value streams_total)" = "$tun_total" ]
check "both sum their loops' streams ($(json_value streams_total) = $tun_total)" $?
per_loop="$(grep -o '"worker_sessions":\[[^]]*\]' <<<"$HEALTH_BODY" | sed 's/.*\[\(.*\)\]/\1/')"
[ $((${per_loop%,*} + ${per_loop#*,})) = "$(json_value sessions)" ]
check "the connector's sessions are the sum of its loops' ($per_loop)" $?
run curl -s "$DC1_URL/metrics"
grep -q '^ztr_data_workers 2$' <<<"$RUN_OUT" &&
  [ "$(sed -n 's/^ztr_data_streams_total{[^}]*} //p; s/^ztr_data_streams_total //p' <<<"$RUN_OUT")" -ge 400 ]
check "/metrics: ztr_data_workers 2 and ztr_data_streams_total over every loop" $?

# ---- streams on both connector loops -----------------------------------------------------
# Where a session lands is the kernel's draw (SO_REUSEPORT): the tunneler is
# restarted (new sessions) until its streams ride on both connector loops.
spread=no
for attempt in $(seq 1 10); do
  if [ "$attempt" -gt 1 ]; then
    stop_agent "$LAPTOP_PID"
    start_agent tunneler laptop FORWARDS="127.0.0.1:$FWD=echo,127.0.0.1:$FWD_WEB=web" WORKERS=2
    keep_agent LAPTOP
    wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
  fi
  HOLDS=()
  for i in 1 2 3 4 5 6; do
    "$TCP_PEER" hold "127.0.0.1:$FWD" 1 25 >"$E2E_TMP/hold.$i" 2>&1 &
    HOLDS+=($!)
  done
  for ((i = 0; i < 100; i++)); do health "$DC1_URL"; [ "$(json_value streams)" = 6 ] && break; sleep 0.05; done
  per_loop="$(grep -o '"worker_streams":\[[^]]*\]' <<<"$HEALTH_BODY" | sed 's/.*\[\(.*\)\]/\1/')"
  if [ "$(json_value streams)" = 6 ] && [ "${per_loop%,*}" -gt 0 ] && [ "${per_loop#*,}" -gt 0 ]; then
    spread=yes; break
  fi
  kill "${HOLDS[@]}" 2>/dev/null; wait "${HOLDS[@]}" 2>/dev/null
done
[ "$spread" = yes ]; check "6 streams held on both connector loops ($per_loop, attempt $attempt)" $?
health "$DC1_URL"; sessions=$(json_value sessions)

# ---- renewal on every loop ------------------------------------------------------------------
opened_before=$(count_lines "$LAPTOP_LOG" 'msg="data session opened"')
wait_for_line "$DC1_LOG" 'msg="certificate renewed"' $((TTL * 6 / 10 + 5))
check "the connector renews while the streams are held" $?
wait_for_line "$LAPTOP_LOG" 'msg="certificate renewed"' $((TTL * 6 / 10 + 5))
check "the tunneler renews while the streams are held" $?
for ((i = 0; i < 40; i++)); do
  [ "$(count_lines "$LAPTOP_LOG" 'msg="peer certificate renewed"')" -ge "$sessions" ] && break; sleep 0.05
done
[ "$(count_lines "$DC1_LOG" 'msg="renewed certificate presented to live sessions"')" -eq 2 ]
check "each connector loop presents the renewed certificate to its sessions" $?
[ "$(count_lines "$LAPTOP_LOG" 'msg="peer certificate renewed"')" -ge "$sessions" ]
check "every session's tunneler end takes the connector's renewal ($sessions sessions)" $?
alive=0; for p in "${HOLDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
[ "$alive" -eq 6 ]; check "all 6 held streams are still up after both renewals ($alive)" $?
[ "$(count_lines "$LAPTOP_LOG" 'msg="data session opened"')" -eq "$opened_before" ] &&
  [ "$(count_lines "$LAPTOP_LOG" 'msg="data session closed"')" -eq 0 ]
check "no session was closed or opened again" $?

# ---- an allowlist change reaches every loop within 1 s ---------------------------------------
ctl deny --tunneler laptop --resource echo >/dev/null
before=$(date +%s%N)
for ((i = 0; i < 100; i++)); do
  alive=0; for p in "${HOLDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
  [ "$alive" -eq 0 ] && break; sleep 0.02
done
after=$(date +%s%N)
[ "$alive" -eq 0 ]; check "every held stream, on both loops, is reset" $?
elapsed_ms=$(((after - before) / 1000000))
[ "$elapsed_ms" -lt 1000 ]; check "within 1 s of the change ($elapsed_ms ms)" $?
[ "$(count_lines "$DC1_LOG" 'msg="stream closed by the allowlist"')" -eq 6 ]
check "the connector logs each of the 6 resets" $?
run curl -s -m 10 "http://127.0.0.1:$FWD_WEB/"
expect_out "hello from resource" "the resource still granted keeps working"
# The last grant gone, the tunneler is off the allowlist (its sessions
# closed by the connector, "tunneler not allowed") and the connector off its
# list (closed by the tunneler, "connector removed"), whichever is first.
ctl deny --tunneler laptop --resource web >/dev/null
before=$(date +%s%N)
for ((i = 0; i < 250; i++)); do health "$DC1_URL"; [ "$(json_value sessions)" = 0 ] && break; sleep 0.02; done
after=$(date +%s%N)
[ "$(json_value sessions)" = 0 ]; check "every session of the removed tunneler, on every loop, is closed" $?
elapsed_ms=$(((after - before) / 1000000))
[ "$elapsed_ms" -lt 1000 ]; check "within 1 s ($elapsed_ms ms)" $?
run curl -s "$DC1_URL/metrics"
count=$(sed -n 's/^ztr_revocation_apply_seconds_count //p' <<<"$RUN_OUT")
within=$(sed -n 's/^ztr_revocation_apply_seconds_bucket{le="1"} //p' <<<"$RUN_OUT")
[ "$within" = "$count" ]
check "ztr_revocation_apply_seconds: every close by the connector within 1 s ($within of $count)" $?

stop_agent "$LAPTOP_PID"; check "the tunneler stops cleanly (exit $AGENT_STATUS)" $([ "$AGENT_STATUS" -eq 0 ]; echo $?)
stop_agent "$DC1_PID"; check "the connector stops cleanly (exit $AGENT_STATUS)" $([ "$AGENT_STATUS" -eq 0 ]; echo $?)
finish
