#!/usr/bin/env bash
# Failure mode 5.2, permission denied on the CA file: the connector's or
# tunneler's CONTROLLER_CA cannot be read by the unit's dynamic user. Under a
# real systemd (a systemd-nspawn boot of this host, shared with 5_1 through
# tests/systemd/results.sh), ztr-tunneler is started with CONTROLLER_CA a
# root-only (0600) /etc/ztr/ca.crt, then with a readable file in a 0700
# directory: each start fails with exit status 2, which the unit does not
# restart (RestartPreventExitStatus=2).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/fm.sh"
. "$(dirname "$0")/../../systemd/results.sh"

fm_mode 5.2 "Permission Denied on CA file" "open /etc/.../ca.crt: permission denied"
systemd_results || fm_pending "$SYSTEMD_SKIPPED"
R="$SYSTEMD_RESULTS"

# error_field FILE: the daemon's error="..." field in a journal excerpt.
error_field() { grep -o 'error="[^"]*"' "$1" 2>/dev/null | head -1; }

# The file itself is root-only (0600).
fm_seen_text "$(error_field "$R/5_2.journal")" "open /etc/ztr/ca.crt: permission denied"
grep -qF 'error="failed to read controller CA: open /etc/ztr/ca.crt: permission denied"' \
  "$R/5_2.journal" 2>/dev/null
check "one error line: failed to read controller CA: open /etc/ztr/ca.crt: permission denied" $?
grep -qE '^start_status=[1-9]' "$R/5_2.result" 2>/dev/null
check "systemctl start ztr-tunneler fails" $?
grep -qx 'ExecMainStatus=2' "$R/5_2.result" 2>/dev/null
check "the tunneler exits with status 2 (configuration)" $?
grep -qx 'ActiveState=failed' "$R/5_2.result" 2>/dev/null
check "the unit stays failed: no restart for exit status 2" $?

# The seed's cause: directory permissions too strict for the dynamic user (a
# readable file in a 0700 directory).
seen="$FM_SEEN"
fm_seen_text "$(error_field "$R/5_2_dir.journal")" "open /etc/ztr/private/ca.crt: permission denied"
[ -n "$seen" ] && FM_SEEN="$seen ; $FM_SEEN"
grep -qx 'ActiveState=failed' "$R/5_2_dir.result" 2>/dev/null
check "CA in a 0700 directory: the unit stays failed" $?
fm_finish
