#!/usr/bin/env bash
# Attack: exhaust the controller's file descriptors. Anyone who can reach
# the control port opens connections until the process is out of
# descriptors; every further connection then waits in the listen queue,
# accept() fails with EMFILE, and a listener that stays readable spins the
# loop and logs each turn. The controller keeps a descriptor in reserve to
# take and close such a connection, so the loop sleeps, the failure is
# logged at most once per 10 s with a count of those left out, and it
# accepts again by itself once the attacker lets go. The last 32
# descriptors are never used for new connections, so those already taken
# can still be served (TLS, the database) rather than failing one by one.
. "$(dirname "$0")/../e2e/lib.sh"
start_controller ctl || exit 1
prlimit --pid "$CTL_PID" --nofile=64:64
ctl_port="${CTL_ADDR##*:}"

# Fill the table, then queue more connections than it can take.
held=()
for _ in $(seq 1 90); do
  { exec {fd}<>"/dev/tcp/127.0.0.1/$ctl_port"; } 2>/dev/null && held+=("$fd")
done
sleep 1
before=$(count_lines "$CTL_LOG" 'msg="accept failed"')
ticks() { awk '{print $14 + $15}' "/proc/$CTL_PID/stat"; }
t0=$(ticks)
sleep 2
t1=$(ticks)
cpu=$((t1 - t0))
[ "$before" -ge 1 ]
check "the controller ran out of descriptors (accept failed logged)" $?
[ "$cpu" -le 40 ]
check "out of descriptors the loop sleeps (cpu over 2 s: $cpu ticks of $(getconf CLK_TCK)/s)" $?
total=$(count_lines "$CTL_LOG" 'msg="accept failed"')
[ "$total" -le 3 ]
check "the failure is logged a bounded number of times (got $total lines)" $?
warns=$(count_lines "$CTL_LOG" 'level=warn')
[ "$warns" -le 5 ]
check "90 connections cost a handful of warn lines, not one each (got $warns)" $?
kill -0 "$CTL_PID"
check "the controller survives" $?

for fd in "${held[@]}"; do exec {fd}>&-; done
sleep 1
ok=0
for _ in $(seq 1 40); do
  [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$HEALTH_URL/health")" = 200 ] && { ok=1; break; }
  sleep 0.25
done
[ "$ok" = 1 ]
check "once the connections close /health answers again" $?
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)"
check "and the control port accepts and enrolls an agent" $?
grep -q 'msg="accept failed".*suppressed=' "$CTL_LOG"
check "the log line counts the failures it left out" $?
finish
