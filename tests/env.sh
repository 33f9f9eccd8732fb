# shellcheck shell=bash
# Environment every test runner shares: where the tree and the binaries of
# one build are, and sanitizer options (leak checks on, stop at the first
# report). Usage: . tests/env.sh BUILD
ZTR_TEST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ZTR_TEST_ROOT
export ZTR_TEST_BIN="$ZTR_TEST_ROOT/${1:-build}/bin"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
