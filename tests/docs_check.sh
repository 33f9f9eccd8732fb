#!/usr/bin/env bash
# The docs generated from the settings schema are the committed ones, and the
# man pages lint clean.
#   tests/docs_check.sh BUILD     BUILD: a build tree with bin/ (build/asan)
# 1. scripts/gen-docs.py --check: docs/CONFIG.md's tables and man/*'s
#    settings sections are what `DAEMON --print-schema` (the table --help
#    prints) generates; a difference names the file and the key.
# 2. The check itself: a copy with one key's default changed and one key
#    added by hand must fail, naming both.
# 3. man/*: `mandoc -T lint` and `groff -ww -man -Tutf8` print nothing.
# Prints "docs: N passed, M failed" (tests/run-all.sh adds it up).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/bin"
passed=0 failed=0
ok() { echo "  ok    $1"; passed=$((passed + 1)); }
bad() { echo "  FAIL  $1"; [ -n "${2:-}" ] && sed 's/^/        /' <<<"$2"; failed=$((failed + 1)); }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if out="$(python3 "$ROOT/scripts/gen-docs.py" --check "$BIN" 2>&1)"; then
  ok "docs/CONFIG.md and man/ match the schema (gen-docs.py --check)"
else
  bad "docs/CONFIG.md and man/ match the schema (gen-docs.py --check)" "$out"
fi

mkdir -p "$tmp/docs" "$tmp/man"
cp "$ROOT/docs/CONFIG.md" "$tmp/docs/" && cp "$ROOT"/man/* "$tmp/man/"
# A stale default for one key in CONFIG.md; a key the schema lacks in connector(8).
sed -i 's/^| `SVID_TTL` | `svid_ttl` | `--svid-ttl` | duration | `24h` |/| `SVID_TTL` | `svid_ttl` | `--svid-ttl` | duration | `12h` |/' "$tmp/docs/CONFIG.md"
sed -i '0,/^\.\\" END generated: connector settings/s//.TP\n\\fBNOT_A_KEY\\fR, \\fBnot_a_key\\fR\nmade up.\n&/' "$tmp/man/connector.8"
out="$(ZTR_DOCS_ROOT="$tmp" python3 "$ROOT/scripts/gen-docs.py" --check "$BIN" 2>&1)"
status=$?
if [ "$status" -ne 0 ] && grep -q 'docs/CONFIG.md: controller settings: key SVID_TTL differs' <<<"$out" &&
    grep -q 'man/connector.8: connector settings: key NOT_A_KEY is not in the schema' <<<"$out"; then
  ok "a stale key (SVID_TTL) and an unknown one (NOT_A_KEY) fail the check, named"
else
  bad "a stale key and an unknown one fail the check, named (exit $status)" "$out"
fi

for page in "$ROOT"/man/*.[0-9]; do
  name="man/$(basename "$page")"
  if ! command -v mandoc >/dev/null; then
    bad "$name: mandoc -T lint (mandoc missing: make deps)"
  elif out="$(mandoc -T lint "$page" 2>&1)" && [ -z "$out" ]; then
    ok "$name: mandoc -T lint clean"
  else
    bad "$name: mandoc -T lint" "$out"
  fi
  out="$(LC_ALL=C.UTF-8 groff -ww -man -Tutf8 -z "$page" 2>&1)"
  if [ -z "$out" ]; then ok "$name: groff -ww clean"; else bad "$name: groff -ww" "$out"; fi
done

echo "docs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
