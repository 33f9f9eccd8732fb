#!/bin/bash
# Runs inside the throw-away root tests/systemd/deb.sh boots, as its only job
# (ztr-deb-test.service): installs the ztr .debs with dpkg, checks what they
# put where (units enabled, not started; man pages; examples; wolfSSL linked
# statically), runs the controller, a connector and a tunneler from their
# units, passes a request through, then purges the packages. Writes
# PASS|what / FAIL|what|detail lines to $ZTR_TEST_RESULTS/checks.txt and
# powers the container off, whatever happened.
set -u
R="${ZTR_TEST_RESULTS:?}"
BUILD="${ZTR_TEST_BUILD:?}"
exec >"$R/inner.log" 2>&1
touch "$R/started"
finish() {
  [ -n "${PEER_PID:-}" ] && kill "$PEER_PID" 2>/dev/null
  journalctl -b --no-pager -o short-iso >"$R/journal.txt" 2>&1
  systemctl poweroff --no-block
}
trap finish EXIT

CTL=/usr/bin/controller
PKGS=(ztr-common ztr-controller ztr-connector ztr-tunneler)
# The console's package, when make deb built it (make ui had run).
CONSOLE=0
if ls "$R"/debs/ztr-console_*.deb >/dev/null 2>&1; then CONSOLE=1; PKGS+=(ztr-console); fi
pass() { echo "PASS|$1" >>"$R/checks.txt"; echo "ok: $1"; }
fail() { echo "FAIL|$1|${2:-}" >>"$R/checks.txt"; echo "FAIL: $1 ${2:-}"; }
expect() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what" "$*"; fi; }
equal() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi; }
prop() { systemctl show -P "$2" "$1.service"; }
wait_until() {
  local limit=$(($1 * 5)) i; shift
  for ((i = 0; i < limit; i++)); do "$@" && return 0; sleep 0.2; done
  return 1
}
set_key() {
  if grep -qE "^#?$2=" "$1"; then sed -i -E "0,/^#?$2=/ s|^#?$2=.*|$2=$3|" "$1"; else echo "$2=$3" >>"$1"; fi
}
node_field() { "$CTL" node list | grep -E " name=$1 " | tr ' ' '\n' | sed -n "s/^$2=//p"; }
online() { [ "$(node_field "$1" status)" = ONLINE ]; }
through_forward() { curl -s -m 3 http://127.0.0.1:15432/ | grep -qx 'hello from resource'; }

# ---- install ----------------------------------------------------------------------
# A container image's policy-rc.d (exit 101: "start nothing") would keep
# deb-systemd-invoke from stopping units: this root is a fleet machine, not
# an image build. (Gone from the throw-away /usr only.)
rm -f /usr/sbin/policy-rc.d
debs=()
for p in "${PKGS[@]}"; do debs+=("$(ls "$R"/debs/"$p"_*.deb)"); done
expect "dpkg -i ${PKGS[*]}" env DEBIAN_FRONTEND=noninteractive dpkg -i "${debs[@]}"
for p in "${PKGS[@]}"; do
  equal "$p installed" "$(dpkg-query -W -f='${Status}' "$p" 2>&1)" "install ok installed"
  dpkg -L "$p" >"$R/dpkg-L-$p.txt"
done
for b in controller connector tunneler ztr-pki; do expect "/usr/bin/$b" test -x "/usr/bin/$b"; done
for m in man8/controller.8 man8/connector.8 man8/tunneler.8 man1/ztr-pki.1 man5/ztr.conf.5; do
  expect "man page /usr/share/man/$m.gz" test -f "/usr/share/man/$m.gz"
done
for e in controller.conf controller.yaml connector.conf connector.yaml tunneler.conf tunneler.yaml; do
  expect "/etc/ztr/$e.example (a conffile)" grep -qxF "/etc/ztr/$e.example" /var/lib/dpkg/info/ztr-"${e%%.*}".conffiles
done
expect "docs in /usr/share/doc/ztr (OPERATIONS.md)" test -f /usr/share/doc/ztr/OPERATIONS.md.gz
expect "controller --help (exit 0)" "$CTL" --help
# The bash completion, where bash-completion loads it on first use.
COMPLETION=/usr/share/bash-completion/completions/controller
expect "bash completion $COMPLETION (ztr-controller)" grep -qxF "$COMPLETION" "$R/dpkg-L-ztr-controller.txt"
equal "the completion completes 'controller fl' to fleet" \
  "$(bash -c '. "$1"; COMP_WORDS=(controller fl); COMP_CWORD=1; _ztr_controller; echo "${COMPREPLY[*]}"' _ "$COMPLETION")" fleet
# --version names the commit the package was built from (scripts/deb.sh's
# version rule: v1.2-3-gabc -> 1.2+3+gabc, a bare commit abc -> 0~gitabc).
built="$("$CTL" --version | sed -n 's/.* version=\([^ ]*\) .*/\1/p')"
case "$built" in v[0-9]*) want="${built#v}" ;; [0-9]*.*) want="$built" ;; *) want="0~git$built" ;; esac
equal "controller --version ($built) is the package's version" "${want//-/+}" "$(dpkg-query -W -f='${Version}' ztr-controller)"
if ldd /usr/bin/controller /usr/bin/connector /usr/bin/tunneler | grep -qi wolfssl; then
  fail "wolfSSL linked statically" "$(ldd /usr/bin/controller | grep -i wolfssl)"
else
  pass "wolfSSL linked statically (no libwolfssl in ldd)"
fi
UNITS=(ztr-controller ztr-connector ztr-tunneler)
[ "$CONSOLE" = 1 ] && UNITS+=(ztr-ui)
for n in "${UNITS[@]}"; do
  equal "$n enabled" "$(systemctl is-enabled "$n" 2>&1)" enabled
  equal "$n not started by the install" "$(prop "$n" ActiveState)" inactive
done
for n in controller connector tunneler; do
  equal "ztr-$n ExecStart /usr/bin/$n" "$(prop "ztr-$n" ExecStart | sed -n 's/^{ path=\([^ ;]*\).*/\1/p')" "/usr/bin/$n"
done

# ---- configure from the examples, enroll, a request through ------------------------
ADMIN_AUTH_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export ADMIN_AUTH_TOKEN
install -m 0600 /etc/ztr/controller.conf.example /etc/ztr/controller.conf
set_key /etc/ztr/controller.conf ADMIN_AUTH_TOKEN "$ADMIN_AUTH_TOKEN"
expect "systemctl start ztr-controller" timeout 60 systemctl start ztr-controller
"$CTL" ca show --pem >/etc/ztr/controller-ca.pem && chmod 0644 /etc/ztr/controller-ca.pem
"$BUILD/tests/tools/tcp_peer" http 127.0.0.1:0 >"$R/peer.log" 2>&1 &
PEER_PID=$!
wait_until 5 grep -q '^listening port=' "$R/peer.log"
PEER_PORT="$(sed -n 's/^listening port=//p' "$R/peer.log")"
CON_TOKEN="$("$CTL" token create --role connector --name dc1 --address 127.0.0.1)"
TUN_TOKEN="$("$CTL" token create --role tunneler --name laptop)"
expect "controller token create (2 tokens)" test -n "$CON_TOKEN" -a -n "$TUN_TOKEN"
install -m 0600 /etc/ztr/connector.conf.example /etc/ztr/connector.conf
set_key /etc/ztr/connector.conf ENROLLMENT_TOKEN "$CON_TOKEN"
set_key /etc/ztr/connector.conf NODE_NAME dc1
set_key /etc/ztr/connector.conf CONNECTOR_LISTEN 127.0.0.1:7444
set_key /etc/ztr/connector.conf CONNECTOR_ADVERTISE ""
set_key /etc/ztr/connector.conf RESOURCES "web=127.0.0.1:$PEER_PORT"
install -m 0600 /etc/ztr/tunneler.conf.example /etc/ztr/tunneler.conf
set_key /etc/ztr/tunneler.conf ENROLLMENT_TOKEN "$TUN_TOKEN"
set_key /etc/ztr/tunneler.conf NODE_NAME laptop
set_key /etc/ztr/tunneler.conf FORWARDS 127.0.0.1:15432=web
expect "systemctl start ztr-connector" timeout 60 systemctl start ztr-connector
expect "systemctl start ztr-tunneler" timeout 60 systemctl start ztr-tunneler
expect "controller resource add web --connector dc1" "$CTL" resource add web --connector dc1
expect "controller allow --tunneler laptop --resource web" "$CTL" allow --tunneler laptop --resource web
expect "node list: dc1 ONLINE" wait_until 15 online dc1
expect "node list: laptop ONLINE" wait_until 15 online laptop
expect "a request through the tunneler's forward reaches the resource" wait_until 10 through_forward
for n in connector controller tunneler; do
  expect "state in /var/lib/private/ztr-$n" test -d "/var/lib/private/ztr-$n"
done
# journald keeps each line's level as its priority (the <N> prefix the
# daemons write when JOURNAL_STREAM names their stderr), and the prefix is
# not left in the message.
refused() { [ "$(curl -s -m 3 -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer not-the-token' \
  http://127.0.0.1:8080/api/admin/nodes)" = 401 ]; }
expect "a request with a wrong admin token is refused (401)" refused
priorities() {
  journalctl --no-pager -o json -u ztr-controller.service | python3 -c '
import json, sys
seen = {}
for line in sys.stdin:
    e = json.loads(line)
    m = e.get("MESSAGE")
    if not isinstance(m, str) or m.startswith("<"):
        continue
    for msg in ("controller started", "admin request refused"):
        if " msg=\"%s\"" % msg in m:
            seen[msg] = e.get("PRIORITY")
print(seen.get("controller started"), seen.get("admin request refused"))'
}
priorities_kept() { [ "$(priorities)" = "6 4" ]; }
expect "journald: controller started at priority 6 (info), admin request refused at 4 (warning)" \
  wait_until 5 priorities_kept
equal "journald: no message keeps a <N> prefix" \
  "$(journalctl --no-pager -o cat -u ztr-controller.service -u ztr-connector.service -u ztr-tunneler.service | grep -c '^<[0-7]>')" 0
equal "journalctl -p warning shows the refusal, not the info lines" \
  "$(journalctl --no-pager -o cat -p warning -u ztr-controller.service | grep -c 'msg="admin request refused"\|msg="controller started"')" 1
if [ "$CONSOLE" = 1 ]; then
  expect "the console: /usr/lib/ztr/ui/server.mjs, without devDependencies" \
    test -f /usr/lib/ztr/ui/server.mjs -a ! -e /usr/lib/ztr/ui/node_modules/typescript
  install -m 0600 /etc/ztr/ui.conf.example /etc/ztr/ui.conf
  set_key /etc/ztr/ui.conf ADMIN_AUTH_TOKEN "$ADMIN_AUTH_TOKEN"
  set_key /etc/ztr/ui.conf UI_PASSWORD "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  expect "systemctl start ztr-ui" timeout 60 systemctl start ztr-ui
  ui_login() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' http://127.0.0.1:3000/login)" = 200 ]; }
  expect "the console answers on 127.0.0.1:3000 (GET /login 200)" wait_until 30 ui_login
fi

# ---- purge ---------------------------------------------------------------------------
purge=(ztr-tunneler ztr-connector ztr-controller ztr-common)
[ "$CONSOLE" = 1 ] && purge=(ztr-console "${purge[@]}")
expect "dpkg --purge ${purge[*]}" env DEBIAN_FRONTEND=noninteractive dpkg --purge "${purge[@]}"
for n in "${UNITS[@]}"; do
  equal "$n stopped by the purge" "$(prop "$n" ActiveState)" inactive
done
left=""
for p in "${PKGS[@]}"; do
  equal "$p purged" "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | tr -d ' ')" ""
  while read -r f; do
    if { [ -f "$f" ] || [ -L "$f" ]; } && [ ! -d "$f" ]; then left="$left $f"; fi
  done <"$R/dpkg-L-$p.txt"
done
equal "no file of the packages' left" "$left" ""
touch "$R/done"
