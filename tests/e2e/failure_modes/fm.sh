# shellcheck shell=bash
# The failure-modes contract (../shared/seeds/002…, docs/OPERATIONS.md): one
# script per mode, named after its section (1_1_missing_token.sh …). Each
# sources tests/e2e/lib.sh and this file, declares its mode, reproduces it
# with the real binaries, and shows the symptom text verbatim:
#
#   . "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"
#   fm_mode 1.1 "Missing enrollment token" "ENROLLMENT_TOKEN is required"
#   run_agent connector dc1            # ... reproduce it
#   fm_seen "$AGENT_LOG"               # the symptom, verbatim, in that output
#   expect_status 2 "exits non-zero"   # ... and the stated effect (checks)
#   fm_finish
#
# fm_finish prints one line `FM|<id>|<title>|<expected>|<seen>|PASS|FAIL|PENDING`
# (also appended to $FM_RESULTS when set, for `make failure-modes`' table)
# and exits like finish. A mode that belongs to a component ztr does not have
# calls fm_pending REASON instead, so the count stays honest.
FM_ID="" FM_TITLE="" FM_EXPECTED="" FM_SEEN=""

# fm_mode ID TITLE SYMPTOM
fm_mode() { FM_ID="$1" FM_TITLE="$2" FM_EXPECTED="$3"; }

# fm_seen FILE [TEXT]: finds TEXT (default: the expected symptom) verbatim in
# FILE; records the first matching line as what was seen, and counts a check.
fm_seen() {
  local file="$1" text="${2:-$FM_EXPECTED}" line
  line="$(grep -F -m1 -- "$text" "$file" 2>/dev/null)"
  [ -n "$line" ] && FM_SEEN="$line"
  [ -n "$line" ]; check "symptom shown verbatim: $text" $?
}

# fm_seen_text TEXT: the same for output already captured in a variable.
fm_seen_text() {
  local output="$1" text="${2:-$FM_EXPECTED}" line
  line="$(grep -F -m1 -- "$text" <<<"$output")"
  [ -n "$line" ] && FM_SEEN="$line"
  [ -n "$line" ]; check "symptom shown verbatim: $text" $?
}

fm_line() {
  local verdict="$1" seen="${FM_SEEN//|//}"
  seen="${seen:0:200}"
  echo "FM|$FM_ID|$FM_TITLE|$FM_EXPECTED|$seen|$verdict"
  [ -n "${FM_RESULTS:-}" ] && echo "FM|$FM_ID|$FM_TITLE|$FM_EXPECTED|$seen|$verdict" >>"$FM_RESULTS"
  return 0
}

fm_finish() {
  if [ "$E2E_FAILURES" -eq 0 ] && [ -n "$FM_SEEN" ]; then fm_line PASS; else fm_line FAIL; fi
  finish
  exit $?
}

# fm_pending REASON: this mode is not reproducible in ztr yet; says why.
fm_pending() {
  FM_SEEN="pending: $1"
  fm_line PENDING
  echo "  pending: $1"
  exit 0
}
