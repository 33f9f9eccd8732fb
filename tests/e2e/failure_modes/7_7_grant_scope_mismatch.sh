#!/usr/bin/env bash
# Failure mode 7.7 (seed 003): a grant rejected with `grant scope mismatch`.
# Grants (which foreign tunnelers reach which resources) are the data-plane
# half of federation, not built yet.
. "$(dirname "$0")/../lib.sh"; . "$(dirname "$0")/fm.sh"
fm_mode 7.7 "Grant rejected with grant scope mismatch" "grant scope mismatch"
fm_pending "federation grants are not built yet (the data-plane half of issue 15)"
