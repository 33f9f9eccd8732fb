#!/usr/bin/env bash
# The controller's disk fills up (ENOSPC on every write to controller.db,
# injected while a file exists): changes answer 503 "store unavailable:
# database or disk is full" and are not applied, the nodes stay ONLINE and
# streams flow, and once the disk frees up the next change works.
. "$(dirname "$0")/store_lib.sh"
store_fault_scenario enospc "database or disk is full" full
finish
