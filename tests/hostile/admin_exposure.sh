#!/usr/bin/env bash
# Attack: reach the admin API from the network, and tie it up without the
# token. The admin API is plain HTTP: on a non-loopback address its bearer
# token crosses the wire in the clear, so the controller refuses such an
# ADMIN_LISTEN at start-up (exit 2) unless ADMIN_LISTEN_INSECURE=true says
# the operator accepts it (a warn line then says so; ADMIN_TLS=true is the
# other way off loopback, tests/hostile/admin_tls.sh). Without the token a
# client gets 401 as soon as its headers are in: a large body it declares
# is never waited for nor read. A client that trickles its request to stay
# under the idle timeout is cut at the per-connection deadline.
. "$(dirname "$0")/../e2e/lib.sh"

ctl_env=(TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/ctl0" CONTROLLER_LISTEN=127.0.0.1:0
  HEALTH_LISTEN=127.0.0.1:0 ADMIN_AUTH_TOKEN="$E2E_ADMIN_TOKEN")
run timeout 10 env "${ctl_env[@]}" ADMIN_LISTEN=0.0.0.0:0 "$ZTR_TEST_BIN/controller"
expect_status 2 "a non-loopback ADMIN_LISTEN is refused at start-up"
expect_err_has 'ADMIN_LISTEN: \"0.0.0.0:0\" is not a loopback address: the admin API is plain HTTP' \
  "the refusal names the key and why"
expect_err_has "ADMIN_LISTEN_INSECURE=true" "the refusal names the override"

start_controller insecure ADMIN_LISTEN=0.0.0.0:0 ADMIN_LISTEN_INSECURE=true
check "with ADMIN_LISTEN_INSECURE=true the controller starts" $?
grep -qF 'level=warn msg="ADMIN_LISTEN_INSECURE: admin API served in plain HTTP on a non-loopback address' "$CTL_LOG"
check "and says loudly that the token crosses the network in the clear" $?
stop_controller

start_controller ctl || exit 1
port="${ADMIN_URL##*:}"

# Headers declaring a 1000000-byte body, and no body: the answer must not
# wait for it.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /api/admin/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n' >&3
status_line="$(timeout 3 head -1 <&3 | tr -d '\r')"
exec 3<&- 3>&-
[ "$status_line" = "HTTP/1.1 401 Unauthorized" ]
check "no token: 401 before the declared body is read (got: $status_line)" $?
grep -qF 'msg="admin request refused" method=POST reason=unauthorized' "$CTL_LOG"
check "the refusal is logged" $?

# With the token the same request still gets its body read and answered.
run curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $E2E_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' --data '{"role":"connector","name":"dc1"}' "$ADMIN_URL/api/admin/tokens"
[ "$RUN_OUT" = 201 ] || [ "$RUN_OUT" = 200 ]
check "with the token a request is served (got $RUN_OUT)" $?

# Slowloris: one header byte every 2 s stays under the 10 s idle timeout;
# the connection is cut at the 30 s deadline all the same.
start=$(date +%s)
(
  printf 'GET /api/admin/nodes HTTP/1.1\r\n'
  for _ in $(seq 1 30); do printf 'X'; sleep 2; done
) 2>/dev/null | timeout 50 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port 4<&0; cat <&4 >&3 & cat <&3 >/dev/null; kill \$! 2>/dev/null"
elapsed=$(($(date +%s) - start))
[ "$elapsed" -le 40 ]
check "a trickling client is cut by the deadline (held ${elapsed}s)" $?
grep -qF 'msg="http connections past their deadline closed"' "$CTL_LOG"
check "the cut is logged" $?
run curl -s -m 5 -o /dev/null -w '%{http_code}' "$HEALTH_URL/health"
expect_out 200 "the controller still answers"
finish
