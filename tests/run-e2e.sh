#!/usr/bin/env bash
# Runs every tests/<suite>/*.sh (e2e by default; hostile: the attacks that
# must be refused) against the binaries of one build tree.
set -uo pipefail
BUILD="${1:-build}"
SUITE="${2:-e2e}"
. "$(dirname "$0")/env.sh" "$BUILD"
ROOT="$ZTR_TEST_ROOT"
passed=0; failed=0; names=()
for script in "$ROOT"/tests/"$SUITE"/*.sh; do
  name="$(basename "$script" .sh)"
  case "$name" in lib | *_lib) continue ;; esac # helpers, not tests
  [ -f "$script" ] || continue
  echo "== $SUITE/$name"
  if bash "$script"; then passed=$((passed + 1)); else failed=$((failed + 1)); names+=("$name"); fi
done
echo "$SUITE: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failed: ${names[*]}" >&2; exit 1; }
[ "$passed" -gt 0 ] || [ "$SUITE" != e2e ]
