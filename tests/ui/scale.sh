#!/usr/bin/env bash
# The console in front of 10 000 nodes (ui/tests/browser/scale.test.mjs):
# a controller gets UI_SCALE_NODES real enrollments from ctl_load (bench/ctl_load.c),
# UI_SCALE_ONLINE of them holding live control sessions, then Chromium logs
# in and measures how long the first page of the Nodes page takes to
# render, a search, and the next page. Reported, not asserted (timings
# vary with the machine): the lines starting "# measured" and
# $UI_SCALE_OUT (default build/ui-test/scale.txt), which bench/console.sh
# turns into bench/RESULTS.md. What is asserted: every node counted, the
# page shows 50 rows of them, search and paging return the right nodes.
. "$(dirname "$0")/../e2e/lib.sh"
. "$(dirname "$0")/ui_lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
NODES="${UI_SCALE_NODES:-10000}"
ONLINE="${UI_SCALE_ONLINE:-1000}"
OUT="${UI_SCALE_OUT:-$ROOT/build/ui-test/scale.txt}"
LOAD="$ZTR_TEST_BIN/../bench/ctl_load"
[ -x "$LOAD" ] || { echo "no $LOAD (make all builds it)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_controller ctl HEARTBEAT_INTERVAL=10s || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
TOKEN="$(ctl token create --role tunneler --name scale- --prefix --uses "$NODES" 2>/dev/null)"
[ -n "$TOKEN" ]; check "a prefix token for $NODES enrollments" $?

start=$(date +%s.%N)
run "$LOAD" enroll --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org --token "$TOKEN" \
  --count $((NODES - ONLINE)) --concurrency 16 --name-prefix scale-off- --timeout 600
expect_status 0 "$((NODES - ONLINE)) nodes enroll"
[ "$RUN_STATUS" -eq 0 ] || { tail -5 "$CTL_LOG" | sed 's/^/  | /'; kill -0 "$CTL_PID" 2>/dev/null || echo "  | the controller is gone"; }
"$LOAD" sessions --controller "$CTL_ADDR" --ca "$CA" --trust-domain example.org --token "$TOKEN" \
  --sessions "$ONLINE" --identities "$ONLINE" --concurrency 16 --interval 10000 --hold 600 \
  --name-prefix scale-on- --timeout 600 >"$E2E_TMP/sessions.out" 2>"$E2E_TMP/sessions.err" &
LOAD_PID=$!; E2E_PIDS+=("$LOAD_PID")
wait_for_line "$E2E_TMP/sessions.out" "ready sessions=$ONLINE" 300
check "$ONLINE of them hold live control sessions" $?
setup_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
echo "  # $NODES nodes in ${setup_s} s"

start_ui ADMIN_API_URL="$ADMIN_URL" ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN" || exit 1
run env UI_URL="$UI_URL" UI_PASSWORD="$UI_TEST_PASSWORD" NODES="$NODES" ONLINE="$ONLINE" OUT="$OUT" \
  UI_SHOTS="${UI_SHOTS:-$ROOT/build/ui-test/screenshots}" \
  node --test --test-reporter=spec --test-timeout=120000 "$UI_DIR/tests/browser/scale.test.mjs"
printf '%s\n' "$RUN_OUT" "$RUN_ERR" | grep -vE '^\s*$' | sed 's/^/  | /'
expect_status 0 "the browser at $NODES nodes"
echo "  browser: $(sed -n 's/^ℹ pass //p' <<<"$RUN_OUT") passed, $(sed -n 's/^ℹ fail //p' <<<"$RUN_OUT") failed"
# What one page costs the controller (the console's server adds its hop).
for route in "nodes?offset=0&limit=50" "fleet?offset=0&limit=50" "nodes"; do
  best=""
  for i in 1 2 3 4 5; do
    t="$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/$route")"
    best="$(awk -v a="$t" -v b="${best:-999}" 'BEGIN {print (a < b ? a : b)}')"
  done
  key="admin_$(tr -c 'a-z0-9\n' '_' <<<"${route%%\?*}")_ms"; [ "$route" = nodes ] && key=admin_nodes_all_ms
  echo "$key=$(awk -v t="$best" 'BEGIN {printf "%.1f", t * 1000}')" >>"$OUT"
  echo "  # measured GET /api/admin/$route: best of 5 $(awk -v t="$best" 'BEGIN {printf "%.1f", t * 1000}') ms"
done
stop_ui
kill -TERM "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null
finish
