#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time over its seed corpus.
# Usage: run-fuzz.sh FUZZ_BUILD_DIR SECONDS TARGET...
set -euo pipefail
build="$1"; seconds="$2"; shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
passed=0; failed=0
for target in "$@"; do
  seeds="$root/tests/fuzz/corpus/$target"
  work="$(mktemp -d)"
  cp -r "$seeds"/. "$work"/ 2>/dev/null || true
  echo "== $target: ${seconds}s"
  # -max_len keeps inputs near real sizes; a crash leaves its input in $build.
  if "$root/$build/$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
       -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$root/$build/$target-" \
       "$work" > "$root/$build/$target.log" 2>&1; then
    grep -E 'stat::number_of_executed_units' "$root/$build/$target.log" || true
    passed=$((passed + 1))
  else
    tail -40 "$root/$build/$target.log"
    failed=$((failed + 1))
  fi
  rm -rf "$work"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
