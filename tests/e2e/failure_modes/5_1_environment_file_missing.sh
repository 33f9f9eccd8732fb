#!/usr/bin/env bash
# Failure mode 5.1, EnvironmentFile missing: /etc/ztr/connector.conf was never
# created. Under a real systemd (a systemd-nspawn boot of this host, shared
# with 5_2 through tests/systemd/results.sh), `systemctl start ztr-connector`
# fails before the daemon runs and the journal names the cause.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/fm.sh"
. "$(dirname "$0")/../../systemd/results.sh"

fm_mode 5.1 "EnvironmentFile Missing" "Failed to load environment files: No such file or directory"
systemd_results || fm_pending "$SYSTEMD_SKIPPED"

fm_seen "$SYSTEMD_RESULTS/5_1.journal"
grep -qE '^start_status=[1-9]' "$SYSTEMD_RESULTS/5_1.result" 2>/dev/null
check "systemctl start ztr-connector fails" $?
grep -qx 'Result=resources' "$SYSTEMD_RESULTS/5_1.result" 2>/dev/null
check "the unit's result is 'resources' (the daemon never ran)" $?
grep -qF 'Failed to start ztr-connector.service' "$SYSTEMD_RESULTS/5_1.journal" 2>/dev/null
check "the journal says: Failed to start ztr-connector.service" $?
fm_finish
