#!/bin/bash
# Runs inside the systemd-nspawn container that tests/systemd/run.sh boots, as
# its only job (ztr-systemd-test.service). Installs the staged `make install`
# tree, drives the three daemons' units and the console's (ztr-ui) with
# systemctl, the controller's CLI and curl, and writes to $ZTR_TEST_RESULTS
# (bind-mounted from the host):
#   checks.txt           PASS|what  or  FAIL|what|detail, one line per check
#   5_1.journal          journalctl -u ztr-connector while its conf is missing
#   5_2.journal          journalctl -u ztr-tunneler, CONTROLLER_CA a 0600 root file
#   5_2_dir.journal      the same, CONTROLLER_CA in a 0700 root directory
#   5_*.result           start_status=, ActiveState=, Result=, ExecMainStatus=
#   ui-*                 the console: journalctl -u ztr-ui serving (ui-start.journal)
#                        and not configured (ui-not-configured.journal), login
#                        headers, the Nodes page, listening sockets
#   security-<unit>.txt  systemd-analyze security
#   journal.txt          the whole boot's journal
# then powers the container off, whatever happened.
set -u
R="${ZTR_TEST_RESULTS:?}"
BUILD="${ZTR_TEST_BUILD:?}"
STAGE="${ZTR_TEST_STAGE:?}"
exec >"$R/inner.log" 2>&1
touch "$R/started"
finish() {
  journalctl -b --no-pager -o short-iso >"$R/journal.txt" 2>&1
  systemctl poweroff --no-block
}
trap finish EXIT

UNITS=(ztr-controller ztr-connector ztr-tunneler)
CTL=/usr/local/bin/controller
UI_DIR=/usr/local/lib/ztr/ui
UI=http://127.0.0.1:3000   # UI_LISTEN's default
UI_JAR=/run/ztr-ui-test.cookies
T0=$(date +%s)

pass() { echo "PASS|$1" >>"$R/checks.txt"; echo "ok: $1"; }
fail() { echo "FAIL|$1|${2:-}" >>"$R/checks.txt"; echo "FAIL: $1 ${2:-}"; }
# expect WHAT CMD...: one check, passed when CMD succeeds.
expect() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what" "$*"; fi; }
# equal WHAT GOT WANT
equal() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
prop() { systemctl show -P "$2" "$1.service"; }
state_is() { [ "$(prop "$1" ActiveState)" = "$2" ]; }
status_is() { [ "$(prop "$1" StatusText)" = "$2" ]; }
# wait_until SECONDS CMD...: polls CMD every 0.2 s.
wait_until() {
  local limit=$(($1 * 5)) i; shift
  for ((i = 0; i < limit; i++)); do "$@" && return 0; sleep 0.2; done
  return 1
}
cursor() { journalctl -n0 --show-cursor -q 2>/dev/null | sed -n 's/^-- cursor: //p'; }
journal_since() { journalctl --no-pager -o short-iso --after-cursor "$1" -u "$2.service"; }
# set_key FILE KEY VALUE: the first KEY= or #KEY= line becomes KEY=VALUE
# (appended when there is none), so the examples are what gets tested.
set_key() {
  if grep -qE "^#?$2=" "$1"; then
    sed -i -E "0,/^#?$2=/ s|^#?$2=.*|$2=$3|" "$1"
  else
    echo "$2=$3" >>"$1"
  fi
}
del_key() { sed -i -E "/^$2=/d" "$1"; }
node_field() { "$CTL" node list | grep -E " name=$1 " | tr ' ' '\n' | sed -n "s/^$2=//p"; }
online() { [ "$(node_field "$1" status)" = ONLINE ]; }
through_forward() { curl -s -m 3 http://127.0.0.1:15432/ | grep -qx 'hello from resource'; }
through_socks() { curl -s -m 3 --socks5-hostname 127.0.0.1:1080 http://web/ | grep -qx 'hello from resource'; }
# ui_get PATH [curl args]: "<status> <body>" of a GET to the console.
ui_get() { local p="$1"; shift; curl -s -m 10 -w ' %{http_code}' "$@" "$UI$p" | sed -E 's/^(.*) ([0-9]{3})$/\2 \1/'; }
ui_logged() { journalctl --no-pager -o cat --after-cursor "$1" -u ztr-ui.service | grep -qxF "$2"; }
ui_started() { journalctl --no-pager -o cat --after-cursor "$1" -u ztr-ui.service |
  grep -qF 'msg="console started" listen=127.0.0.1:3000 port=3000'; }
# no_secret WHAT VALUE: VALUE appears nowhere in this boot's journal (the
# value itself never goes to a check's detail).
no_secret() {
  if journalctl -b --no-pager -o cat | grep -qF "$2"; then fail "$1 is not in the journal" "found"
  else pass "$1 is not in the journal"; fi
}

# check_service NAME STATUS: active, Type=notify with its STATUS= text, a
# dynamic user (UID 61184..65519) owning its StateDirectory.
check_service() {
  local n="$1" status="$2" pid uid
  equal "$n active" "$(prop "$n" ActiveState)" active
  equal "$n notified STATUS=$status" "$(prop "$n" StatusText)" "$status"
  equal "$n DynamicUser" "$(prop "$n" DynamicUser)" yes
  equal "$n StateDirectory" "$(prop "$n" StateDirectory)" "$n"
  pid="$(prop "$n" MainPID)"
  uid="$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status" 2>/dev/null)"
  if [ -n "$uid" ] && [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ]; then
    pass "$n runs as a dynamic user (uid $uid)"
  else
    fail "$n runs as a dynamic user" "uid '${uid:-none}' of pid $pid"
  fi
  equal "$n /var/lib/$n -> private/$n" "$(readlink "/var/lib/$n")" "private/$n"
  equal "$n state directory owned by uid $uid" "$(stat -c %u "/var/lib/private/$n" 2>/dev/null)" "$uid"
}

# check_stop NAME: systemctl stop, then exit status 0 and a clean result.
check_stop() {
  expect "systemctl stop $1" timeout 60 systemctl stop "$1"
  systemctl show "$1" >"$R/show-$1-stop.txt"
  equal "$1 stopped: ExecMainStatus" "$(prop "$1" ExecMainStatus)" 0
  equal "$1 stopped: ExecMainCode (exited)" "$(prop "$1" ExecMainCode)" 1
  equal "$1 stopped: Result" "$(prop "$1" Result)" success
}

# ---- install ------------------------------------------------------------------------
# /usr is the host's, read-only; /usr/local is a tmpfs (run.sh).
if ! { cp -a "$STAGE/etc/." /etc/ && cp -a "$STAGE/usr/local/." /usr/local/; }; then
  fail "copy the make install tree"
fi
for b in controller connector tunneler ztr-pki; do
  expect "installed /usr/local/bin/$b" test -x "/usr/local/bin/$b"
done
for f in server.mjs next.config.mjs package.json .next/BUILD_ID node_modules/next/package.json; do
  expect "installed $UI_DIR/$f" test -f "$UI_DIR/$f"
done
expect "the console is installed without its build cache" test ! -e "$UI_DIR/.next/cache"
expect "... and without devDependencies (typescript, playwright-core)" \
  test ! -e "$UI_DIR/node_modules/typescript" -a ! -e "$UI_DIR/node_modules/playwright-core"
expect "installed /etc/systemd/system/ztr-ui.service" test -f /etc/systemd/system/ztr-ui.service
for n in "${UNITS[@]}"; do
  expect "installed /etc/systemd/system/$n.service" test -f "/etc/systemd/system/$n.service"
  # A short watchdog for this test only, in /run: a daemon that did not send
  # WATCHDOG=1 every WatchdogSec/2 would be killed within the test.
  mkdir -p "/run/systemd/system/$n.service.d"
  printf '[Service]\nWatchdogSec=2s\n' >"/run/systemd/system/$n.service.d/test-watchdog.conf"
  # An ASan build (run.sh): LeakSanitizer's ptrace is refused by the filter.
  [ "${ZTR_TEST_SANITIZED:-0}" = 1 ] &&
    printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
      >"/run/systemd/system/$n.service.d/test-sanitizer.conf"
done
systemctl daemon-reload
out="$(systemd-analyze verify /etc/systemd/system/ztr-*.service 2>&1)"
equal "systemd-analyze verify: no warnings" "$out" ""
equal "ExecStart is \$PREFIX/bin/connector" \
  "$(prop ztr-connector ExecStart | sed -n 's/^{ path=\([^ ;]*\).*/\1/p')" /usr/local/bin/connector
equal "ztr-ui ExecStart is node \$PREFIX/lib/ztr/ui/server.mjs" \
  "$(prop ztr-ui ExecStart | sed -n 's/^{ path=[^ ;]* ; argv\[\]=\([^;]*\) ;.*/\1/p')" \
  "/usr/bin/node $UI_DIR/server.mjs"

# ---- the controller -----------------------------------------------------------------
ADMIN_AUTH_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export ADMIN_AUTH_TOKEN
install -m 0600 /etc/ztr/controller.conf.example /etc/ztr/controller.conf
set_key /etc/ztr/controller.conf ADMIN_AUTH_TOKEN "$ADMIN_AUTH_TOKEN"
expect "systemctl start ztr-controller" timeout 60 systemctl start ztr-controller
check_service ztr-controller serving
expect "controller state: controller.db, ca/ca-1.key 0600" \
  test "$(stat -c %a /var/lib/private/ztr-controller/ca/ca-1.key 2>/dev/null)" = 600 -a \
  -f /var/lib/private/ztr-controller/controller.db
"$CTL" ca show --pem >/etc/ztr/controller-ca.pem && chmod 0644 /etc/ztr/controller-ca.pem
expect "controller ca show --pem (CONTROLLER_CA)" grep -q 'BEGIN CERTIFICATE' /etc/ztr/controller-ca.pem
CA_BEFORE="$("$CTL" ca show 2>&1)"

# ---- a resource, then the connector and the tunneler ----------------------------------------
"$BUILD/tests/tools/tcp_peer" http 127.0.0.1:0 >"$R/peer.log" 2>&1 &
wait_until 5 grep -q '^listening port=' "$R/peer.log"
PEER_PORT="$(sed -n 's/^listening port=//p' "$R/peer.log")"
expect "resource (tcp_peer http) listening" test -n "$PEER_PORT"

CON_TOKEN="$("$CTL" token create --role connector --name dc1 --address 127.0.0.1)"
TUN_TOKEN="$("$CTL" token create --role tunneler --name laptop)"
expect "controller token create (2 tokens)" test -n "$CON_TOKEN" -a -n "$TUN_TOKEN"

install -m 0600 /etc/ztr/connector.conf.example /etc/ztr/connector.conf
set_key /etc/ztr/connector.conf ENROLLMENT_TOKEN "$CON_TOKEN"
set_key /etc/ztr/connector.conf NODE_NAME dc1
set_key /etc/ztr/connector.conf CONNECTOR_LISTEN 127.0.0.1:7444
set_key /etc/ztr/connector.conf CONNECTOR_ADVERTISE ""
set_key /etc/ztr/connector.conf RESOURCES "web=127.0.0.1:$PEER_PORT"
set_key /etc/ztr/connector.conf RECONNECT_MAX_DELAY 2s
install -m 0600 /etc/ztr/tunneler.conf.example /etc/ztr/tunneler.conf
set_key /etc/ztr/tunneler.conf ENROLLMENT_TOKEN "$TUN_TOKEN"
set_key /etc/ztr/tunneler.conf NODE_NAME laptop
set_key /etc/ztr/tunneler.conf FORWARDS 127.0.0.1:15432=web
set_key /etc/ztr/tunneler.conf RECONNECT_MAX_DELAY 2s

# Type=notify: start returns once the agent is ONLINE (READY=1).
expect "systemctl start ztr-connector" timeout 60 systemctl start ztr-connector
expect "systemctl start ztr-tunneler" timeout 60 systemctl start ztr-tunneler
check_service ztr-connector ONLINE
check_service ztr-tunneler ONLINE
for n in connector tunneler; do
  expect "ztr-$n state: key.pem 0600, cert.pem, bundle.pem, node.json" \
    test "$(stat -c %a "/var/lib/private/ztr-$n/key.pem" 2>/dev/null)" = 600 -a \
    -f "/var/lib/private/ztr-$n/cert.pem" -a -f "/var/lib/private/ztr-$n/bundle.pem" -a \
    -f "/var/lib/private/ztr-$n/node.json"
done
expect "controller resource add web --connector dc1" "$CTL" resource add web --connector dc1
expect "controller allow --tunneler laptop --resource web" "$CTL" allow --tunneler laptop --resource web
expect "node list: dc1 ONLINE" wait_until 15 online dc1
expect "node list: laptop ONLINE" wait_until 15 online laptop
"$CTL" node list >"$R/node-list.txt" 2>&1
CON_ID="$(node_field dc1 id)" TUN_ID="$(node_field laptop id)"
expect "a request through the tunneler's forward reaches the resource" wait_until 10 through_forward
expect "a request through the tunneler's SOCKS5 reaches the resource" wait_until 10 through_socks
expect "connector /health 200 ONLINE" sh -c 'curl -sf -m 3 127.0.0.1:9101/health | grep -q "\"state\":\"ONLINE\""'

# ---- the console (ztr-ui) against the running controller ------------------------------------
# The test's drop-in hides the source and build trees from it: it runs from
# $PREFIX/lib/ztr/ui alone, in a container with loopback only (no network).
UI_PASSWORD="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
install -m 0600 /etc/ztr/ui.conf.example /etc/ztr/ui.conf
set_key /etc/ztr/ui.conf ADMIN_AUTH_TOKEN "$ADMIN_AUTH_TOKEN"
set_key /etc/ztr/ui.conf UI_PASSWORD "$UI_PASSWORD"
mkdir -p /run/systemd/system/ztr-ui.service.d
printf '[Service]\nInaccessiblePaths=/ztr-test\n' >/run/systemd/system/ztr-ui.service.d/test-no-source.conf
systemctl daemon-reload
cur="$(cursor)"
expect "systemctl start ztr-ui" timeout 60 systemctl start ztr-ui
# Type=exec: started once node runs; listening once it logs so.
expect "ztr-ui journal: console started listen=127.0.0.1:3000" \
  wait_until 30 ui_started "$cur"
journal_since "$cur" ztr-ui >"$R/ui-start.journal"
equal "ztr-ui answers on 127.0.0.1:3000 (GET /login)" "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$UI/login")" 200
# (No awk here: /etc/alternatives is not in the volatile root.)
ss -Hltn >"$R/ui-listen.txt" 2>&1
equal "ztr-ui listens on loopback only" \
  "$(grep -oE '[^ ]+:3000 ' "$R/ui-listen.txt" | sort -u | tr '\n' '|')" "127.0.0.1:3000 |"
equal "ztr-ui active" "$(prop ztr-ui ActiveState)" active
equal "ztr-ui DynamicUser" "$(prop ztr-ui DynamicUser)" yes
pid="$(prop ztr-ui MainPID)"
uid="$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status" 2>/dev/null)"
if [ -n "$uid" ] && [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ]; then
  pass "ztr-ui runs as a dynamic user (uid $uid)"
else
  fail "ztr-ui runs as a dynamic user" "uid '${uid:-none}' of pid $pid"
fi
# The login form as the browser posts it: urlencoded, with the page's Origin.
printf 'wrong-password-1234' >/run/ztr-ui-test.pw
curl -s -m 10 -o /dev/null -D "$R/ui-login-wrong.headers" -H "Origin: $UI" \
  --data-urlencode password@/run/ztr-ui-test.pw "$UI/api/session"
sed -i 's/\r$//' "$R/ui-login-wrong.headers"
expect "console login, wrong password: 303 to /login?error=wrong password" \
  grep -qi '^location: /login?error=wrong%20password' "$R/ui-login-wrong.headers"
printf '%s' "$UI_PASSWORD" >/run/ztr-ui-test.pw
rm -f "$UI_JAR"
curl -s -m 10 -o /dev/null -D "$R/ui-login.headers" -c "$UI_JAR" -H "Origin: $UI" \
  --data-urlencode password@/run/ztr-ui-test.pw "$UI/api/session"
rm -f /run/ztr-ui-test.pw
sed -i 's/\r$//' "$R/ui-login.headers"
equal "console login: 303 to /" \
  "$(head -1 "$R/ui-login.headers" | cut -d' ' -f2) $(grep -i '^location:' "$R/ui-login.headers")" "303 location: /"
expect "console login: session cookie HttpOnly, SameSite=Strict" \
  grep -qi '^set-cookie: ztr_ui_session=[^;]*; Path=/; HttpOnly; SameSite=Strict' "$R/ui-login.headers"
got="$(ui_get /api/admin/nodes -b "$UI_JAR")"
equal "console /api/admin/nodes through the proxy: 200" "${got%% *}" 200
equal "... the controller's nodes" "$(grep -o '"name":"[^"]*"' <<<"$got" | sort | tr '\n' ' ')" '"name":"dc1" "name":"laptop" '
equal "... without a session: 401" "$(ui_get /api/admin/nodes | cut -d' ' -f1)" 401
equal "the Nodes page, rendered by the installed build: 200" \
  "$(curl -s -m 10 -b "$UI_JAR" -o "$R/ui-nodes.html" -w '%{http_code}' "$UI/")" 200
expect "... with dc1 on it" grep -qF '>dc1<' "$R/ui-nodes.html"
chunk="$(grep -o '/_next/static/[^"]*\.js' "$R/ui-nodes.html" | head -1)"
equal "... and its script $chunk" "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$UI$chunk")" 200

# ---- the watchdog: WATCHDOG=1 keeps coming, nobody gets killed ------------------------------
declare -A PID_BEFORE WD_BEFORE
for n in "${UNITS[@]}"; do
  equal "$n WatchdogUSec (test drop-in)" "$(prop "$n" WatchdogUSec)" 2s
  PID_BEFORE[$n]="$(prop "$n" MainPID)"
  WD_BEFORE[$n]="$(prop "$n" WatchdogTimestampMonotonic)"
done
sleep 5
for n in "${UNITS[@]}"; do
  wd="$(prop "$n" WatchdogTimestampMonotonic)"
  if [ "${wd:-0}" -gt "${WD_BEFORE[$n]:-0}" ]; then pass "$n sends WATCHDOG=1"; else
    fail "$n sends WATCHDOG=1" "WatchdogTimestampMonotonic ${WD_BEFORE[$n]} -> $wd"; fi
  equal "$n survives 2.5 watchdog periods (same MainPID)" "$(prop "$n" MainPID)" "${PID_BEFORE[$n]}"
  equal "$n NRestarts" "$(prop "$n" NRestarts)" 0
done

# ---- systemctl stop is clean ------------------------------------------------------------------
check_stop ztr-tunneler
check_stop ztr-connector

# ---- a restart keeps the identity: no token needed --------------------------------------------
del_key /etc/ztr/connector.conf ENROLLMENT_TOKEN
del_key /etc/ztr/tunneler.conf ENROLLMENT_TOKEN
cur="$(cursor)"
expect "restart without ENROLLMENT_TOKEN: start ztr-connector" timeout 60 systemctl start ztr-connector
expect "restart without ENROLLMENT_TOKEN: start ztr-tunneler" timeout 60 systemctl start ztr-tunneler
expect "restarted connector loaded its identity" sh -c "journalctl --no-pager -o cat --after-cursor '$cur' -u ztr-connector.service | grep -q 'msg=\"identity loaded\"'"
expect "after restart: dc1 ONLINE" wait_until 15 online dc1
expect "after restart: laptop ONLINE" wait_until 15 online laptop
equal "after restart: dc1 keeps its node id" "$(node_field dc1 id)" "$CON_ID"
equal "after restart: laptop keeps its node id" "$(node_field laptop id)" "$TUN_ID"
equal "after restart: still 2 nodes" "$("$CTL" node list | grep -c '^id=')" 2
expect "after restart: a request through the forward" wait_until 10 through_forward

# ---- the controller: clean stop, restart keeps the CA, agents come back -------------------------
check_stop ztr-controller
got="$(ui_get /api/admin/nodes -b "$UI_JAR")"
equal "controller down: console answers 502, saying why" "$got" \
  '502 {"error":"cannot reach the controller at http://127.0.0.1:8080: connection refused"}'
equal "controller down: ztr-ui still active" "$(prop ztr-ui ActiveState) $(prop ztr-ui NRestarts)" "active 0"
expect "systemctl start ztr-controller (again)" timeout 60 systemctl start ztr-controller
equal "controller restart keeps the CA (ca show)" "$("$CTL" ca show 2>&1)" "$CA_BEFORE"
expect "agents reconnect: dc1 ONLINE" wait_until 20 online dc1
expect "agents reconnect: laptop ONLINE" wait_until 20 online laptop
equal "connector was not restarted meanwhile" "$(prop ztr-connector NRestarts)" 0

# ---- failure mode 5.1: the EnvironmentFile is missing -------------------------------------------
mv /etc/ztr/connector.conf /etc/ztr/connector.conf.away
systemctl stop ztr-connector
cur="$(cursor)"
timeout 60 systemctl start ztr-connector
status=$?
wait_until 5 sh -c "journalctl --no-pager -o cat --after-cursor '$cur' -u ztr-connector.service | grep -q 'Failed to load environment files'"
journal_since "$cur" ztr-connector >"$R/5_1.journal"
{
  echo "start_status=$status"
  echo "ActiveState=$(prop ztr-connector ActiveState)"
  echo "SubState=$(prop ztr-connector SubState)"
  echo "Result=$(prop ztr-connector Result)"
} >"$R/5_1.result"
if [ "$status" -ne 0 ]; then pass "5.1: systemctl start fails (status $status)"; else
  fail "5.1: systemctl start fails" "status 0"; fi
expect "5.1: journal: Failed to load environment files: No such file or directory" \
  grep -qF 'Failed to load environment files: No such file or directory' "$R/5_1.journal"
systemctl stop ztr-connector
systemctl reset-failed ztr-connector
mv /etc/ztr/connector.conf.away /etc/ztr/connector.conf
expect "5.1: with the file back, ztr-connector starts" timeout 60 systemctl start ztr-connector

# ---- revocation: REVOKED stays up, exit 3 once stopped, final (RestartPreventExitStatus) -------
expect "controller node revoke laptop" "$CTL" node revoke "$TUN_ID" --reason systemd-test
expect "revoked tunneler: STATUS=REVOKED, still running" \
  wait_until 15 status_is ztr-tunneler REVOKED
systemctl stop ztr-tunneler
equal "revoked tunneler: ExecMainStatus once stopped" "$(prop ztr-tunneler ExecMainStatus)" 3
equal "revoked tunneler: NRestarts" "$(prop ztr-tunneler NRestarts)" 0
# docs/OPERATIONS.md: a revoked node starts over with an empty state directory.
systemctl reset-failed ztr-tunneler
expect "systemctl clean --what=state ztr-tunneler" timeout 30 systemctl clean --what=state ztr-tunneler
expect "state directory removed" test ! -e /var/lib/private/ztr-tunneler

# ---- failure mode 5.2: CONTROLLER_CA the dynamic user cannot read -------------------------------
# ca_unreadable NAME PATH: the tunneler's CONTROLLER_CA is PATH; its start must
# fail with exit status 2 (no restart) and `open PATH: permission denied`.
ca_unreadable() {
  local name="$1" path="$2" cur status
  set_key /etc/ztr/tunneler.conf CONTROLLER_CA "$path"
  systemctl reset-failed ztr-tunneler
  cur="$(cursor)"
  timeout 60 systemctl start ztr-tunneler
  status=$?
  wait_until 5 sh -c "journalctl --no-pager -o cat --after-cursor '$cur' -u ztr-tunneler.service | grep -q 'permission denied'"
  journal_since "$cur" ztr-tunneler >"$R/$name.journal"
  {
    echo "start_status=$status"
    echo "ActiveState=$(prop ztr-tunneler ActiveState)"
    echo "SubState=$(prop ztr-tunneler SubState)"
    echo "Result=$(prop ztr-tunneler Result)"
    echo "ExecMainStatus=$(prop ztr-tunneler ExecMainStatus)"
  } >"$R/$name.result"
  if [ "$status" -ne 0 ]; then pass "$name: systemctl start fails (status $status)"; else
    fail "$name: systemctl start fails" "status 0"; fi
  expect "$name: journal: open $path: permission denied" \
    grep -qF "open $path: permission denied" "$R/$name.journal"
  equal "$name: exit status 2, not restarted (failed)" \
    "$(prop ztr-tunneler ExecMainStatus) $(prop ztr-tunneler ActiveState)" "2 failed"
}
# The file itself is root-only (0600) ...
install -m 0600 -o root -g root /etc/ztr/controller-ca.pem /etc/ztr/ca.crt
ca_unreadable 5_2 /etc/ztr/ca.crt
# ... or readable, in a directory the dynamic user may not enter (0700).
install -d -m 0700 -o root -g root /etc/ztr/private
install -m 0644 /etc/ztr/controller-ca.pem /etc/ztr/private/ca.crt
ca_unreadable 5_2_dir /etc/ztr/private/ca.crt

# ---- the console without the admin token (failure mode 6.2 under systemd) ----------------------
del_key /etc/ztr/ui.conf ADMIN_AUTH_TOKEN
cur="$(cursor)"
expect "ztr-ui restarted without ADMIN_AUTH_TOKEN" timeout 60 systemctl restart ztr-ui
expect "... starts all the same" wait_until 30 ui_started "$cur"
journal_since "$cur" ztr-ui >"$R/ui-not-configured.journal"
expect "... journal: exactly ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured" \
  ui_logged "$cur" 'ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured'
equal "... /api/admin/nodes answers 500, saying so" "$(ui_get /api/admin/nodes)" \
  '500 {"error":"ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured"}'
expect "... the login page shows it" sh -c "curl -s -m 10 '$UI/login' | grep -qF 'ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured'"
check_stop ztr-ui

# ---- the end: clean stops, exposure ----------------------------------------------------------------
check_stop ztr-connector
check_stop ztr-controller
if journalctl --no-pager -o cat -u 'ztr-*' | grep -q 'Watchdog timeout'; then
  fail "no watchdog timeout in the journal"
else pass "no watchdog timeout in the journal"; fi
no_secret "the controller's ADMIN_AUTH_TOKEN" "$ADMIN_AUTH_TOKEN"
no_secret "the console's UI_PASSWORD" "$UI_PASSWORD"
for n in "${UNITS[@]}" ztr-ui; do
  systemd-analyze security --no-pager "$n.service" >"$R/security-$n.txt" 2>&1
  score="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$R/security-$n.txt")"
  if [ -n "$score" ] && [ "${score%%.*}" -lt 2 ]; then
    pass "$n exposure $score (< 2.0)"
  else
    fail "$n exposure below 2.0" "${score:-not measured}"
  fi
done
echo "inner.sh ran $(($(date +%s) - T0))s"
touch "$R/done"
