#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time over its seed corpus and
# prints one summary row per target (executions, executions/s, coverage).
# Usage: run-fuzz.sh FUZZ_BUILD_DIR SECONDS TARGET...
# FUZZ_REPORT=FILE also writes the rows as a Markdown table to FILE.
set -euo pipefail
build="$1"; seconds="$2"; shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
passed=0; failed=0
rows=""
for target in "$@"; do
  seeds="$root/tests/fuzz/corpus/$target"
  work="$(mktemp -d)"
  cp -r "$seeds"/. "$work"/ 2>/dev/null || true
  echo "== $target: ${seconds}s"
  log="$root/$build/$target.log"
  # -max_len keeps inputs near real sizes; a crash leaves its input in $build.
  if "$root/$build/$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
       -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$root/$build/$target-" \
       "$work" > "$log" 2>&1; then
    passed=$((passed + 1)); verdict=ok
  else
    tail -40 "$log"
    failed=$((failed + 1)); verdict=FAILED
  fi
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  # The last status line ("#N<TAB>DONE cov: …") carries the final edge
  # coverage (cov), features (ft) and corpus size (corp).
  last="$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1 || true)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
  corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")"
  row="| $target | $seconds | $(stat number_of_executed_units) | $(stat average_exec_per_sec) | ${cov:-?} | ${ft:-?} | ${corp:-?} | $(stat peak_rss_mb) | $verdict |"
  echo "$row"
  rows+="$row"$'\n'
  rm -rf "$work"
done
if [ -n "${FUZZ_REPORT:-}" ]; then
  {
    echo "| target | seconds | executions | exec/s | edges (cov) | features (ft) | corpus | peak RSS MiB | result |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s' "$rows"
  } > "$FUZZ_REPORT"
fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
