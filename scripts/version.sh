#!/usr/bin/env bash
# The version the binaries report (--version, /health, ztr_build_info) and
# the packages carry, on one line:
#   1. a git checkout of this tree: `git describe --always --dirty`;
#   2. a VERSION file beside the Makefile (scripts/deb.sh writes one into the
#      copy it builds): its first line;
#   3. a `git archive` export: the commit git filled in below
#      (.gitattributes: export-subst), described, else its short hash;
#   4. otherwise 0.0.0-unknown.
# Only this tree's own git counts: an export unpacked inside another
# repository must not report that repository's commit.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"

top="$(git -C "$ROOT" rev-parse --show-toplevel 2>/dev/null)" || top=""
if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$ROOT" ] &&
    version="$(git -C "$ROOT" describe --always --dirty 2>/dev/null)" && [ -n "$version" ]; then
  echo "$version"; exit 0
fi
if [ -f "$ROOT/VERSION" ] && IFS= read -r version <"$ROOT/VERSION" && [[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9.+~_-]*$ ]]; then
  echo "$version"; exit 0
fi
# git archive replaces each placeholder; a copy that is not an export keeps them.
archive_describe='$Format:%(describe)$'
archive_commit='$Format:%h$'
for version in "$archive_describe" "$archive_commit"; do
  if [[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9.+~_-]*$ ]]; then echo "$version"; exit 0; fi
done
echo 0.0.0-unknown
