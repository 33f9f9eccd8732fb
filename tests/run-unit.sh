#!/usr/bin/env bash
# Runs every cmocka unit test binary of a build tree; fails if any fails.
# Prints `unit: N passed, M failed` counting individual test cases.
set -uo pipefail
BUILD="${1:-build}"
. "$(dirname "$0")/env.sh" "$BUILD"
ROOT="$ZTR_TEST_ROOT"
passed=0
failed=0
binaries=0
failed_names=()
log="$(mktemp)"
# The store's tests run on SQLite and on a real PostgreSQL server.
. "$(dirname "$0")/pg.sh"
if pg_start; then
  export ZTR_TEST_PG_URL_PREFIX="$PG_URL_PREFIX"
else
  echo "unit: PostgreSQL could not start; the store's PostgreSQL tests fail" >&2
  export ZTR_TEST_PG_URL_PREFIX="unavailable"
fi
trap 'rm -f "$log"; pg_stop' EXIT
for test in "$ROOT/$BUILD"/tests/test_*; do
  [ -x "$test" ] || continue
  name="$(basename "$test")"
  binaries=$((binaries + 1))
  echo "== $name"
  "$test" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  # A binary may run several groups (the store: SQLite, then PostgreSQL).
  ok=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{n += $1} END {print n + 0}')
  bad=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" |
    awk '{n += $1} END {if (NR) print n}')
  passed=$((passed + ${ok:-0}))
  failed=$((failed + ${bad:-0}))
  if [ "$status" -ne 0 ]; then
    failed_names+=("$name")
    # A crash or sanitizer abort counts as a failure even without a summary.
    [ -z "$bad" ] && failed=$((failed + 1))
  fi
done
echo "unit: $passed passed, $failed failed"
if [ "${#failed_names[@]}" -ne 0 ]; then
  echo "failed binaries: ${failed_names[*]}" >&2
  exit 1
fi
[ "$binaries" -gt 0 ] || { echo "unit: no test binaries found in $BUILD/tests" >&2; exit 1; }
