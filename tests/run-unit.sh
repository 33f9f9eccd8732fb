#!/usr/bin/env bash
# Runs every cmocka unit test binary of a build tree; fails if any fails.
set -uo pipefail
BUILD="${1:-build}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export ZTR_TEST_ROOT="$ROOT"
export ZTR_TEST_BIN="$ROOT/$BUILD/bin"
# Leak checking is part of every run; abort on the first sanitizer report.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
passed=0
failed=0
failed_names=()
for test in "$ROOT/$BUILD"/tests/test_*; do
  [ -x "$test" ] || continue
  name="$(basename "$test")"
  echo "== $name"
  if "$test"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$name")
  fi
done
echo "unit: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  echo "failed: ${failed_names[*]}" >&2
  exit 1
fi
[ "$passed" -gt 0 ] || { echo "unit: no test binaries found in $BUILD/tests" >&2; exit 1; }
