#!/usr/bin/env bash
# Runs every failure-mode script (tests/e2e/failure_modes/[0-9]*.sh, one per
# section of the failure-modes document) against the binaries of one build
# tree, then prints the table: mode | symptom expected | symptom seen |
# PASS/FAIL/PENDING, and `failure modes: N passed, M failed, K pending`.
# Exit status 1 if any mode failed. Usage: tests/run-failure-modes.sh [BUILD]
set -uo pipefail
BUILD="${1:-build}"
. "$(dirname "$0")/env.sh" "$BUILD"
ROOT="$ZTR_TEST_ROOT"
FM_RESULTS="$(mktemp)"
LOGS="$(mktemp -d)"
export FM_RESULTS
trap 'rm -rf "$FM_RESULTS" "$LOGS"' EXIT

rows=()   # one "FM|id|title|expected|seen|verdict" per script, in order
for script in "$ROOT"/tests/e2e/failure_modes/[0-9]*.sh; do
  [ -e "$script" ] || continue
  name="$(basename "$script" .sh)"
  log="$LOGS/$name.log"
  before=$(wc -l <"$FM_RESULTS")
  start=$(date +%s)
  bash "$script" >"$log" 2>&1
  status=$?
  took=$(($(date +%s) - start))
  row="$(tail -n +$((before + 1)) "$FM_RESULTS" | grep '^FM|' | tail -1)"
  if [ -z "$row" ]; then
    # The script ended before it could report (it crashed, or its set-up
    # failed): a failure under the script's own name.
    id="${name%%_[a-z]*}"
    row="FM|${id/_/.}|$name|?|no result: the script exited with status $status|FAIL"
  elif [ "$status" -ne 0 ] && [ "${row##*|}" != FAIL ]; then
    row="${row%|*}|FAIL"   # a non-zero exit is a failure whatever was reported
  fi
  rows+=("$row")
  echo "== failure_modes/$name: ${row##*|} (${took} s)"
  grep -E '^  (note|pending):' "$log" | cut -c1-400 | sed 's/^/ /'
  if [ "${row##*|}" = FAIL ]; then
    grep -E '^  FAIL|^    status=|did not start|checks, ' "$log" | cut -c1-400 | sed 's/^/   /'
    echo "   (last lines of the output)"; tail -n 15 "$log" | cut -c1-400 | sed 's/^/   | /'
  fi
done

echo
# The table, aligned by characters (the document's texts are UTF-8).
export LC_ALL=C.UTF-8
cols=("mode" "symptom expected" "symptom seen")
w=(${#cols[0]} ${#cols[1]} ${#cols[2]})
for row in "${rows[@]}"; do
  IFS='|' read -r _ id title expected seen _ <<<"$row"
  for i in 0 1 2; do
    case $i in 0) v="$id $title" ;; 1) v="$expected" ;; 2) v="$seen" ;; esac
    [ "${#v}" -gt "${w[$i]}" ] && w[i]=${#v}
  done
done
cell() { printf '%s%*s' "$1" $(($2 - ${#1})) ''; }
table_row() { echo "$(cell "$1" "${w[0]}") | $(cell "$2" "${w[1]}") | $(cell "$3" "${w[2]}") | $4"; }
table_row "${cols[@]}" "result"
table_row "$(printf '%*s' "${w[0]}" '' | tr ' ' -)" "$(printf '%*s' "${w[1]}" '' | tr ' ' -)" \
  "$(printf '%*s' "${w[2]}" '' | tr ' ' -)" "-------"
for row in "${rows[@]}"; do
  IFS='|' read -r _ id title expected seen verdict <<<"$row"
  table_row "$id $title" "$expected" "$seen" "$verdict"
done
passed=0; failed=0; pending=0; failed_names=()
for row in "${rows[@]}"; do
  case "${row##*|}" in
    PASS) passed=$((passed + 1)) ;;
    PENDING) pending=$((pending + 1)) ;;
    *) failed=$((failed + 1)); failed_names+=("$(cut -d'|' -f2 <<<"$row")") ;;
  esac
done
echo
echo "failure modes: $passed passed, $failed failed, $pending pending"
[ "$failed" -eq 0 ] || { echo "failed: ${failed_names[*]}" >&2; exit 1; }
[ "${#rows[@]}" -gt 0 ]
