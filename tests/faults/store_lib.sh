# shellcheck shell=bash
# The scenario of store_disk_full.sh and store_eio.sh: a controller whose
# writes to controller.db fail (through the injector, while a file exists)
# with a connector and a tunneler carrying a stream. Changes are refused
# with 503 and the store's reason, nothing is half-applied, nodes stay
# ONLINE from the heartbeats held in memory, and the first change after the
# disk frees up succeeds.
. "$(dirname "${BASH_SOURCE[0]}")/fault_lib.sh"

# admin_call METHOD PATH [JSON]: the admin API answer: ADMIN_CODE, ADMIN_BODY.
admin_call() {
  local out
  out="$(curl -s -m 20 -w '\n%{http_code}' -X "$1" -H "Authorization: Bearer $E2E_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$ADMIN_URL/api/admin$2")"
  ADMIN_CODE="${out##*$'\n'}"
  ADMIN_BODY="${out%$'\n'*}"
}

# store_snapshot: what an operator compares before and after (the
# allowlist, resources, tokens, and every node's id, name and revocation;
# not status/last_seen, which heartbeats move).
store_snapshot() {
  ctl allowlist 2>&1
  ctl resource list 2>&1
  ctl token list 2>&1 | awk '{print $1, $2, $3}'
  ctl node list --json 2>&1 | grep -o '"\(id\|name\|revoked\)":[^,]*' | sort
}

# store_fault_scenario ACTION REASON KIND: ACTION (enospc|eio) on every
# write to controller.db while $E2E_TMP/fault exists; REASON is the engine's
# text the API must answer with, KIND the ztr_store_errors_total label.
store_fault_scenario() {
  local action="$1" reason="$2" kind="$3" flag="$E2E_TMP/fault" before after
  fault_env write "$action" controller.db 1 0 "$flag"
  start_controller ctl "${FAULT_ENV[@]}" || return 1
  start_peer echo || return 1
  relay_pair echo,spare || return 1
  before="$(store_snapshot)"

  : >"$flag"   # the disk fails from here
  admin_call POST /allowlist '{"tunneler":"laptop","resource":"spare"}'
  [ "$ADMIN_CODE" = 503 ]; check "allow answers 503 while the store fails (got $ADMIN_CODE $ADMIN_BODY)" $?
  grep -qF "store unavailable: $reason" <<<"$ADMIN_BODY"
  check "its JSON error names the store's reason ($reason)" $?
  run ctl allow --tunneler laptop --resource spare
  expect_status 1 "the CLI's allow fails with the API-error exit code"
  expect_err_has "error: store unavailable: $reason" "the CLI prints the reason"
  run ctl deny --tunneler laptop --resource echo
  expect_status 1 "deny is refused too"
  expect_err_has "store unavailable: $reason" "deny says why"
  admin_call POST /tokens '{"role":"tunneler","name":"phone"}'
  [ "$ADMIN_CODE" = 503 ] && grep -qF "store unavailable: $reason" <<<"$ADMIN_BODY"
  check "token create answers 503 with the reason (got $ADMIN_CODE $ADMIN_BODY)" $?
  run ctl resource add other --connector dc1
  expect_status 1 "resource add is refused"

  # Past three heartbeat intervals (the offline cutoff) several times over.
  sleep 2.5
  kill -0 "$CTL_PID" 2>/dev/null; check "the controller keeps running" $?
  run ctl node list
  [ "$(grep -c ONLINE <<<"$RUN_OUT")" -eq 2 ]
  check "both nodes stay ONLINE while heartbeats cannot be stored" $?
  wait_through "127.0.0.1:$FWD" 20; check "new streams still go through" $?
  health "$HEALTH_URL"
  [ "$(json_value store)" = unavailable ] && [ "$(json_value store_error)" = "$reason" ]
  check "/health says the store is unavailable and why ($HEALTH_BODY)" $?
  metric_at_least "$HEALTH_URL" "ztr_store_errors_total{kind=\"$kind\"}" 1
  check "ztr_store_errors_total{kind=\"$kind\"} counts the failed writes" $?
  grep -F 'msg="store unavailable"' "$CTL_LOG" | grep -qF "kind=$kind reason=\"$reason\""
  check "the controller logs the store unavailable once, with kind and reason" $?
  [ "$(count_lines "$CTL_LOG" 'msg="store unavailable"')" -eq 1 ]
  check "logged once, not per failed write" $?
  grep -qF 'msg="heartbeats not stored, kept in memory; offline sweep skipped"' "$CTL_LOG"
  check "the heartbeat flush failed and kept its batch" $?
  after="$(store_snapshot)"
  [ "$before" = "$after" ]; check "nothing was half-applied (allowlist, resources, tokens, nodes unchanged)" $?
  [ "$before" = "$after" ] || diff <(echo "$before") <(echo "$after") >&2

  rm -f "$flag"   # the disk is back
  run ctl allow --tunneler laptop --resource spare
  expect_status 0 "the next change after the disk frees up succeeds"
  run ctl allowlist
  expect_out_has "spare" "and it is in the allowlist"
  wait_for_line "$CTL_LOG" 'msg="store writable again"' 10
  check "the controller logs that the store is writable again" $?
  health "$HEALTH_URL"
  [ "$(json_value store)" = writable ]; check "/health says writable again" $?
  run ctl node list
  [ "$(grep -c ONLINE <<<"$RUN_OUT")" -eq 2 ]; check "both nodes still ONLINE" $?
  stop_controller
  [ "$STOP_STATUS" -eq 0 ]; check "the controller stops cleanly (exit $STOP_STATUS)" $?
  [ "$STOP_STATUS" -eq 0 ] || tail -5 "$CTL_LOG" >&2
  ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$CTL_LOG"
  check "no sanitizer report in the controller log" $?
}
