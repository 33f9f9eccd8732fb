#!/usr/bin/env bash
# The web console at 10 000 nodes: tests/ui/scale.sh against the release
# build (real enrollments by bench/ctl_load, 1000 of them with live
# control sessions), and the times the browser measured, as a markdown
# section for bench/RESULTS.md on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build/bench/console-scale.txt"
log="$root/build/bench/console-scale.log"
mkdir -p "$root/build/bench"
make -C "$root" --no-print-directory ui >&2
rm -f "$out"
if ! ZTR_TEST_BIN="$root/build/bin" UI_SCALE_OUT="$out" bash "$root/tests/ui/scale.sh" >"$log" 2>&1; then
  echo "console scale test failed (log: $log):" >&2; tail -20 "$log" >&2; exit 1
fi
v() { sed -n "s/^$1=//p" "$out"; }
setup="$(sed -n 's/^  # \([0-9]*\) nodes in \([0-9.]*\) s$/\2/p' "$log")"
echo "The Nodes page (\`ui/\`, production build, \`ui/server.mjs\`) in Debian's Chromium"
echo "(headless, 1280×720, driven by playwright-core) in front of a release-build"
echo "controller holding 10000 nodes: 9000 enrolled, 1000 more enrolled and holding live"
echo "control sessions (heartbeat 10 s), all by \`bench/ctl_load\` over real TLS (set-up ${setup} s)."
echo "The page asks the controller for 50 rows at a time (\`GET /api/admin/nodes?offset=&limit=50\`)."
echo "Source: \`tests/ui/scale.sh\`, \`ui/tests/browser/scale.test.mjs\` (also run by \`make test\`"
echo "under ASan, where it only prints its times)."
echo
echo "| measurement | value |"
echo "|---|---|"
echo "| first render: navigation → first row visible (target < 1 s), 3 loads | **$(v first_render_ms_1) / $(v first_render_ms_2) / $(v first_render_ms_3) ms** |"
echo "| first contentful paint (the browser's own timing), same loads | $(v first_contentful_paint_ms_1) / $(v first_contentful_paint_ms_2) / $(v first_contentful_paint_ms_3) ms |"
echo "| next page: click → 50 new rows | $(v next_page_ms) ms |"
echo "| search for one node by name: typed → its row alone (includes the 250 ms typing pause) | $(v search_ms) ms |"
echo "| page size (HTML after render) | $(( $(v page_html_bytes) / 1024 )) KiB |"
echo "| the controller alone: \`GET /api/admin/nodes?offset=0&limit=50\` (best of 5) | $(v admin_nodes_ms) ms |"
echo "| the controller alone: \`GET /api/admin/fleet?offset=0&limit=50\` (best of 5) | $(v admin_fleet_ms) ms |"
echo "| for comparison, every node at once: \`GET /api/admin/nodes\` (best of 5) | $(v admin_nodes_all_ms) ms |"
