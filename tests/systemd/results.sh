# shellcheck shell=bash
# For the failure-mode scripts that need a real systemd (5_1, 5_2): one
# systemd-nspawn boot of tests/systemd/run.sh serves them all. Source after
# tests/e2e/lib.sh (it needs ZTR_TEST_BIN), then:
#
#   systemd_results || fm_pending "$SYSTEMD_SKIPPED"
#   fm_seen "$SYSTEMD_RESULTS/5_1.journal"
#
# systemd_results runs run.sh for the build tree of $ZTR_TEST_BIN unless its
# results ($ZTR_SYSTEMD_RESULTS, default BUILD/systemd-test) are from a boot
# that finished after the last change to the binaries, the units, the
# examples and tests/systemd/ (a lock keeps scripts run side by side to one
# boot). Sets SYSTEMD_RESULTS; returns 1 with SYSTEMD_SKIPPED (the reason)
# when systemd-nspawn cannot run here.
# shellcheck disable=SC2034  # both are read by the sourcing script
SYSTEMD_RESULTS="" SYSTEMD_SKIPPED=""

systemd_results() {
  local root build newer
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  build="$(cd "$ZTR_TEST_BIN/.." && pwd)"
  SYSTEMD_RESULTS="${ZTR_SYSTEMD_RESULTS:-$build/systemd-test}"
  if ! mkdir -p "$SYSTEMD_RESULTS" 2>/dev/null || [ ! -w "$SYSTEMD_RESULTS" ]; then
    # Not ours to write (another user's tree): run.sh still says why it skips.
    SYSTEMD_RESULTS="$E2E_TMP/systemd-test"
    mkdir -p "$SYSTEMD_RESULTS"
  fi
  (
    flock 9
    if [ -f "$SYSTEMD_RESULTS/finished" ] && [ ! -f "$SYSTEMD_RESULTS/skipped" ]; then
      newer="$(find "$ZTR_TEST_BIN"/controller "$ZTR_TEST_BIN"/connector "$ZTR_TEST_BIN"/tunneler \
        "$root"/systemd "$root"/conf "$root"/tests/systemd "$root"/Makefile \
        -newer "$SYSTEMD_RESULTS/finished" -print -quit 2>/dev/null)"
      [ -z "$newer" ] && exit 0
    fi
    echo "  tests/systemd/run.sh $build (one systemd-nspawn boot; output: $SYSTEMD_RESULTS/run.out)"
    ZTR_SYSTEMD_RESULTS="$SYSTEMD_RESULTS" bash "$root/tests/systemd/run.sh" "$build" \
      >"$SYSTEMD_RESULTS/run.out" 2>&1
    exit 0
  ) 9>"$SYSTEMD_RESULTS.lock"
  if [ -f "$SYSTEMD_RESULTS/skipped" ]; then
    SYSTEMD_SKIPPED="$(cat "$SYSTEMD_RESULTS/skipped")"
    return 1
  fi
  if [ ! -f "$SYSTEMD_RESULTS/finished" ]; then
    echo "  tests/systemd/run.sh did not finish:" >&2
    tail -5 "$SYSTEMD_RESULTS/run.out" 2>/dev/null | sed 's/^/    /' >&2
  fi
  return 0
}
