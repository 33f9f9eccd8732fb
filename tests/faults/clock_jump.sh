#!/usr/bin/env bash
# The wall clock of a host running a controller, a connector and a
# tunneler jumps while they run (the injector's clock offset, shared by the
# three as on one host; the monotonic clock does not move, as on a real
# machine):
#  - back one hour: established control and data sessions go on, no
#    renewal storm (no renewal at all: they are hours away), no negative
#    duration in /health, /metrics or the logs;
#  - forward two days (certificates of 24 h): each agent reports "certificate
#    expired" and re-authenticates by proof of possession, the controller
#    logs "node re-authenticated" with the new not_after, and streams work
#    again.
# A backward jump makes certificates issued since the new "now" minus 60 s
# not yet valid: new handshakes fail "x509: certificate is not yet valid"
# until the clock catches up (docs/OPERATIONS.md); this test keeps to
# established sessions there.
. "$(dirname "$0")/fault_lib.sh"
CLOCK="$E2E_TMP/clock"
clock_env "$CLOCK"
start_controller ctl "${CLOCK_ENV[@]}" || exit 1
start_peer echo || exit 1
relay_pair echo "${CLOCK_ENV[@]}" -- "${CLOCK_ENV[@]}" || exit 1

renewals() { curl -s "$HEALTH_URL/metrics" | awk '$1 == "ztr_controller_renewals_total" {print $2}'; }
# negatives: every negative number in the three's /health and /metrics.
negatives() {
  local url
  for url in "$HEALTH_URL" "$DC1_URL" "$LAPTOP_URL"; do
    curl -s "$url/health" | grep -oE '"[a-z_]+":-[0-9]+'
    curl -s "$url/metrics" | awk '$1 !~ /^#/ && $2 < 0 {print $1, $2}'
  done
}

# ---- back one hour ----------------------------------------------------------------
R0=$(renewals)
DISCONNECTS=$(count_lines "$CTL_LOG" 'msg="node disconnected"')
LINES_BEFORE=$(cat "$CTL_LOG" "$DC1_LOG" "$LAPTOP_LOG" | wc -l)
clock_jump "$CLOCK" -3600
sleep 3   # ten heartbeat intervals and sweeps
run ctl node list
[ "$(grep -c ONLINE <<<"$RUN_OUT")" -eq 2 ]; check "both nodes stay ONLINE after the clock went back" $?
[ "$(count_lines "$CTL_LOG" 'msg="node disconnected"')" -eq "$DISCONNECTS" ]
check "no control session ended" $?
wait_through "127.0.0.1:$FWD" 10; check "streams still go through the established data session" $?
[ "$(renewals)" = "$R0" ]; check "no renewal storm: no renewal at all (before $R0, after $(renewals))" $?
[ "$(count_lines "$DC1_LOG" "$LAPTOP_LOG" 'msg="renewing certificate"')" -eq 0 ]
check "the agents renew nothing" $?
NEG="$(negatives)"
[ -z "$NEG" ]; check "no negative number in /health or /metrics: [$NEG]" $?
health "$HEALTH_URL"
[ "$(json_value uptime_s)" -ge 0 ]; check "the controller's uptime is not negative" $?
cat "$CTL_LOG" "$DC1_LOG" "$LAPTOP_LOG" | tail -n +"$((LINES_BEFORE + 1))" | grep -E '=-[0-9]' >"$E2E_TMP/neg-lines"
[ ! -s "$E2E_TMP/neg-lines" ]; check "no negative duration in the logs: $(head -2 "$E2E_TMP/neg-lines")" $?
clock_jump "$CLOCK" 0

# ---- forward two days -----------------------------------------------------------------
REAUTHS=$(count_lines "$CTL_LOG" 'msg="node re-authenticated"')
clock_jump "$CLOCK" $((2 * 86400))
for who in DC1 LAPTOP; do
  log_var="${who}_LOG"; url_var="${who}_URL"
  wait_for_line "${!log_var}" 'msg="certificate expired"' 10
  check "$who reports its certificate expired" $?
  grep -F 'msg="certificate expired"' "${!log_var}" | grep -qF 'reason="certificate expired"'
  check "$who says why, in the documented words" $?
  wait_for_line "${!log_var}" 'msg="re-authenticating" method=proof-of-possession' 10
  check "$who re-authenticates by proof of possession" $?
  wait_for_state ONLINE 20 "${!url_var}"; check "$who is ONLINE again" $?
  na="$(json_value not_after)"
  [ -n "$na" ] && [ "$na" -gt "$(($(date +%s) + 86400))" ]
  check "$who holds a certificate valid past the new time (not_after=$na)" $?
done
[ "$(count_lines "$CTL_LOG" 'msg="node re-authenticated"')" -ge $((REAUTHS + 2)) ]
check "the controller logs both re-authentications" $?
metric_at_least "$HEALTH_URL" ztr_controller_reauth_total 2
check "ztr_controller_reauth_total counts them" $?
wait_through "127.0.0.1:$FWD" 50; check "streams work again with the new certificates" $?
run ctl node list
[ "$(grep -c ONLINE <<<"$RUN_OUT")" -eq 2 ] && ! grep -q 'renewal_overdue=true' <<<"$RUN_OUT"
check "both ONLINE with current certificates in the controller's list" $?
for who in LAPTOP DC1; do
  pid_var="${who}_PID"; stop_agent "${!pid_var}"
  [ "$AGENT_STATUS" -eq 0 ]; check "$who stops cleanly" $?
done
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "the controller stops cleanly" $?
finish
