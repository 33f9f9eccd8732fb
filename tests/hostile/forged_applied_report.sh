#!/usr/bin/env bash
# Attack: forge the revocation SLO. Each allowlist change a controller
# pushes is timed by the `applied` reports of the connectors it was pushed
# to. A tunneler sends one (hoping to mark a revocation done), and a
# connector session that only received the version when it connected sends
# one with absurd times (hoping to skew the fleet's figures). Neither is
# counted: a tunneler's report ends its session, a report of a version not
# pushed to that session as a change is ignored; the change stays
# unreported and the histogram empty.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org)
enroll() { # ROLE NAME [--address IP]
  mkdir -p "$T/$2"
  probe enroll "${P[@]}" --ca "$CA" --role "$1" --name "$2" \
    --token "$(ctl token create --role "$1" --name "$2" "${@:3}")" "${@:3}" --out "$T/$2" >/dev/null
}
enroll connector dc2 --address 127.0.0.1; check "connector dc2 enrolls" $?
enroll tunneler mallory; check "tunneler mallory enrolls" $?
ctl resource add api --connector dc2 >/dev/null

# dc2 is live (it never reports); a change is pushed to it.
probe session "${P[@]}" --dir "$T/dc2" --role connector --data-listen "127.0.0.1:$(free_port)" \
  --address 127.0.0.1 --resource api --interval 200 --duration 20000 >"$T/dc2.out" 2>&1 &
DC2_PID=$!; E2E_PIDS+=("$DC2_PID")
wait_for_line "$T/dc2.out" '"type":"welcome"' 10; check "dc2 is ONLINE" $?
ctl allow --tunneler mallory --resource api >/dev/null
wait_for_line "$T/dc2.out" '"tunnelers":[{' 5; check "the change reaches dc2" $?
VERSION=$(ctl changes --limit 1 --json | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
[ -n "$VERSION" ]; check "the change is listed (id $VERSION), pushed to one connector" $?
FORGED='{"type":"applied","version":'"$VERSION"',"applied_ms":0,"closed_ms":99999999999,"sessions_closed":1000}'

# A tunneler's report: refused, its session closed.
run probe session "${P[@]}" --dir "$T/mallory" --role tunneler --interval 200 --duration 2000 \
  --send "$FORGED"
expect_out_has "unexpected message" "a tunneler's applied report is refused"

# A second session of dc2, which got the version with its welcome, not as a change.
run probe session "${P[@]}" --dir "$T/dc2" --role connector --data-listen "127.0.0.1:$(free_port)" \
  --address 127.0.0.1 --resource api --interval 200 --duration 1500 --send "$FORGED"
run ctl changes --limit 1 --json
python3 -c 'import json,sys; c=json.loads(sys.argv[1])["changes"][0]; sys.exit(0 if c["applied"]==0 and c["close_ms"]==0 and c["sessions_closed"]==0 and not c["complete"] else 1)' "$RUN_OUT"
check "neither report counted: the change is still unreported ($RUN_OUT)" $?
run curl -s "$HEALTH_URL/metrics"
expect_out_has 'ztr_revocation_apply_seconds_count{phase="closed"} 0' "the histogram took no forged time"
kill "$DC2_PID" 2>/dev/null
finish
