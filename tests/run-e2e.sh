#!/usr/bin/env bash
# Runs every tests/e2e/*.sh against the binaries of one build tree.
set -uo pipefail
BUILD="${1:-build}"
. "$(dirname "$0")/env.sh" "$BUILD"
ROOT="$ZTR_TEST_ROOT"
passed=0; failed=0; names=()
for script in "$ROOT"/tests/e2e/*.sh; do
  name="$(basename "$script" .sh)"
  [ "$name" = lib ] && continue
  echo "== e2e/$name"
  if bash "$script"; then passed=$((passed + 1)); else failed=$((failed + 1)); names+=("$name"); fi
done
echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { echo "failed: ${names[*]}" >&2; exit 1; }
[ "$passed" -gt 0 ]
