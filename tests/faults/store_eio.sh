#!/usr/bin/env bash
# The controller's disk fails to write (EIO on every write to
# controller.db, injected while a file exists): changes answer 503 "store
# unavailable: disk I/O error" and are not applied, the nodes stay ONLINE
# and streams flow, and once the disk works again the next change does too.
. "$(dirname "$0")/store_lib.sh"
store_fault_scenario eio "disk I/O error" io
finish
