#!/usr/bin/env bash
# The layering check (DESIGN.md §1): a folder includes only headers of the
# folders in tiers above its own; folders of one tier never include each
# other. The tiers are the one place the order is written; the Makefile's
# LAYERS (the link order) must list the same folders in the same order.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
TIERS=(
  "base"
  "pki"
  "net"
  "ctl data"
  "agent"
  "controller connector tunneler"
)
declare -A rank
flat=""
for i in "${!TIERS[@]}"; do
  for folder in ${TIERS[$i]}; do rank[$folder]=$i; flat="$flat $folder"; done
done
passed=0 failed=0
fail() { echo "  FAIL: $*" >&2; failed=$((failed + 1)); }

make_layers="$(sed -n 's/^LAYERS := //p' Makefile)"
if [ "$(echo $make_layers)" = "$(echo $flat)" ]; then passed=$((passed + 1)); else
  fail "Makefile LAYERS ($make_layers) is not the tiers' order ($flat)"; fi

for folder in $flat; do
  [ -d "$folder" ] || { fail "layer folder $folder/ is missing"; continue; }
  while IFS= read -r hit; do
    file="${hit%%:*}"; rest="${hit#*:}"; line="${rest%%:*}"
    header="$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$rest")"
    target="${header%%/*}"
    [ "$target" = "$folder" ] && continue
    if [ -z "${rank[$target]+x}" ]; then
      fail "$file:$line includes \"$header\" from outside the layers"
    elif [ "${rank[$target]}" -ge "${rank[$folder]}" ]; then
      fail "$file:$line includes \"$header\": $target/ is not below $folder/"
    fi
  done < <(grep -rn --include='*.c' --include='*.h' -E '^#include "' "$folder")
  passed=$((passed + 1))
done
[ -d common ] && fail "common/ is back: put each file in its layer"
echo "layering: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
