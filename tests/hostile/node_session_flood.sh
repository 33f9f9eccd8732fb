#!/usr/bin/env bash
# Attack: a node (or a copy of its key) opens control session after control
# session. Each holds a TLS connection, a descriptor and the controller's
# memory, and the controller used to admit them all. Now a node holds at
# most 4 live control sessions (one, plus room for a reconnect while the
# old stream times out): the next is refused with an error and a close, a
# warn line naming the node and the limit, and the refusal counter; once
# sessions close the node connects again.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org --role connector --dir "$T/n")

mkdir -p "$T/n"
run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
  --token "$(ctl token create --role connector --name n1 --address 127.0.0.1)" --role connector --name n1 \
  --address 127.0.0.1:7444 --out "$T/n"
expect_status 0 "node n1 enrolls"

holders=()
for i in 1 2 3 4; do
  # the binary itself, not the probe function: $! must be its PID to kill it
  "$ZTR_TEST_BIN/../tests/tools/ctl_probe" session "${P[@]}" --interval 200 --duration 15000 \
    >"$T/hold.$i" 2>&1 &
  holders+=($!)
done
for i in 1 2 3 4; do wait_for_line "$T/hold.$i" '"type":"welcome"' 20; done
welcomed=$(grep -l '"type":"welcome"' "$T"/hold.* | wc -l)
[ "$welcomed" -eq 4 ]; check "four sessions of one node are admitted ($welcomed)" $?

# ---- the attack: a fifth, a sixth ------------------------------------------------
for i in 5 6; do
  run probe session "${P[@]}" --until welcome --duration 5000
  [ "$RUN_STATUS" -ne 0 ]; check "session $i is refused (exit $RUN_STATUS)" $?
  expect_out_has "too many control sessions for this node" "session $i is told why"
  grep -qF '"type":"welcome"' <<<"$RUN_OUT"; [ $? -ne 0 ]; check "session $i is never welcomed" $?
done
[ "$(count_lines "$CTL_LOG" 'reason="too many sessions" limit=4')" -ge 2 ]
check "the controller logs each refusal with the node and the limit" $?
grep -qE '^ztr_controller_sessions_rejected_total [1-9]' <<<"$(curl -s "$HEALTH_URL/metrics")"
check "the refusals are counted" $?
for p in "${holders[@]}"; do kill -0 "$p" 2>/dev/null; done
check "the node's admitted sessions were left alone" $?

# ---- the node gets its place back ------------------------------------------------
for p in "${holders[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
ok=1
for _ in $(seq 40); do
  run probe session "${P[@]}" --until welcome --duration 3000
  grep -qF '"type":"welcome"' <<<"$RUN_OUT" && { ok=0; break; }
  sleep 0.25
done
check "once its sessions closed, the node connects again" $ok
stop_controller
finish
