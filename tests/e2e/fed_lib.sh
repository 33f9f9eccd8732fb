# Federation helpers on top of lib.sh: two controllers of their own trust
# domains on loopback, each remembered under a name (A, B, ...).
#
# fed_start NAME TRUST_DOMAIN [VAR=value ...]: starts (or restarts, same
# state dir) a controller with short federation settings; sets NAME_URL
# (admin), NAME_LOG, NAME_PID, NAME_FED (HOST:PORT of its federation
# listener, when it has one), NAME_HEALTH.
FED_FAST=(FEDERATION_HEARTBEAT_INTERVAL=300ms FEDERATION_SWEEP_INTERVAL=500ms
  HEARTBEAT_STALE_AFTER=2s)
fed_start() {
  local name="$1" td="$2"; shift 2
  start_controller "fed-$name" TRUST_DOMAIN="$td" "${FED_FAST[@]}" "$@" || return 1
  printf -v "${name}_URL" '%s' "$ADMIN_URL"
  printf -v "${name}_LOG" '%s' "$CTL_LOG"
  printf -v "${name}_PID" '%s' "$CTL_PID"
  printf -v "${name}_STATE" '%s' "$CTL_STATE"
  printf -v "${name}_HEALTH" '%s' "$HEALTH_URL"
  printf -v "${name}_CTL" '%s' "$CTL_ADDR"
  local port; port="$(log_value "$CTL_LOG" federation_port)"
  printf -v "${name}_FED" '%s' "127.0.0.1:$port"
}
# on NAME CMD...: runs a controller CLI command against NAME.
on() { local name="$1"; shift; local url="${name}_URL"; ADMIN_URL="${!url}" ctl "$@"; }
# fed_stop NAME: SIGTERM and wait.
fed_stop() {
  local pid="${1}_PID"
  kill -TERM "${!pid}" 2>/dev/null
  wait "${!pid}" 2>/dev/null
  FED_STOP_STATUS=$?
}
# peer_state NAME PEER: the peer's state as NAME sees it.
peer_state() {
  local url="${1}_URL"
  curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "${!url}/api/admin/federation/peers/$2" |
    sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p'
}
# peer_field NAME PEER FIELD: one field of the peer as JSON text.
peer_field() {
  local url="${1}_URL"
  curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "${!url}/api/admin/federation/peers/$2" |
    python3 -c "import json,sys; print(json.load(sys.stdin).get('$3',''))"
}
# wait_peer_state NAME PEER STATE [SECONDS]
wait_peer_state() {
  local i
  for ((i = 0; i < ${4:-10} * 10; i++)); do
    [ "$(peer_state "$1" "$2")" = "$3" ] && return 0
    sleep 0.1
  done
  return 1
}
# fed_pair: A (a.example, listening) proposes b, B (b.example) accepts.
fed_pair() {
  fed_start A a.example FEDERATION_LISTEN=127.0.0.1:0 "$@" || return 1
  fed_start B b.example || return 1
  on A federation propose --name b --ttl 1h >"$E2E_TMP/token" || return 1
  on B federation accept --url "$A_FED" --name a --token-file "$E2E_TMP/token" >/dev/null
}
# log_epoch_ms LINE: the ts= of a log line as Unix milliseconds.
log_epoch_ms() { date -u -d "$(sed -n 's/^ts=\([^ ]*\).*/\1/p' <<<"$1")" +%s%3N; }
FED_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# fed_peer ...: the test peer (tests/tools/fed_peer.py).
fed_peer() { python3 "$FED_LIB_DIR/../tools/fed_peer.py" "$@"; }
# foreign_cert DIR TRUST_DOMAIN [CA_CERT CA_KEY]: DIR/leaf.pem + leaf.key, a
# controller certificate for TRUST_DOMAIN signed by the given CA, or by a
# fresh CA of nobody's (DIR/ca.pem).
foreign_cert() {
  local dir="$1" td="$2" ca="${3:-}" cakey="${4:-}"
  mkdir -p "$dir"
  if [ -z "$ca" ]; then
    ca="$dir/ca.pem" cakey="$dir/ca.key"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$cakey" \
      -out "$ca" -subj /CN=unknown-ca -days 1 -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
  fi
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/leaf.key" \
    -out "$dir/leaf.csr" -subj /CN=controller 2>/dev/null || return 1
  printf 'subjectAltName=URI:spiffe://%s/controller\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$td" >"$dir/ext"
  openssl x509 -req -in "$dir/leaf.csr" -CA "$ca" -CAkey "$cakey" -CAcreateserial \
    -out "$dir/leaf.pem" -days 1 -extfile "$dir/ext" 2>/dev/null
}
# fed_stop_all: stops every controller fed_start started (before finish).
fed_stop_all() {
  local n pid
  for n in A B C; do
    pid="${n}_PID"
    [ -n "${!pid:-}" ] && kill -0 "${!pid}" 2>/dev/null || continue
    fed_stop "$n"
    [ "$FED_STOP_STATUS" -eq 0 ]; check "controller $n stops cleanly (exit $FED_STOP_STATUS)" $?
  done
  return 0
}

# use NAME: the agents started next talk to controller NAME (its control
# address, CA and trust domain).
use() {
  local ctl="${1}_CTL" state="${1}_STATE"
  CTL_ADDR="${!ctl}" CTL_STATE="${!state}"
}
# fed_dataplane: after fed_pair with both sides active — on A an echo
# resource "pg" served by connector dc1 (a.example); on B tunneler laptop
# (b.example) forwarding 127.0.0.1:$FWD to pg@a.example. Nothing granted
# yet. Sets ECHO_PORT, FWD, DC1_* and LAPTOP_* (keep_agent).
fed_dataplane() {
  start_peer echo || return 1; ECHO_PORT=$PEER_PORT
  on A resource add pg --connector dc1 >/dev/null || return 1
  use A
  start_agent connector dc1 TRUST_DOMAIN=a.example \
    ENROLLMENT_TOKEN="$(on A token create --role connector --name dc1 --address 127.0.0.1)" \
    RESOURCES="pg=127.0.0.1:$ECHO_PORT" || return 1
  keep_agent DC1
  wait_for_line "$DC1_LOG" 'msg="allowlist received"' 10 || return 1
  use B
  FWD=$(free_port)
  start_agent tunneler laptop TRUST_DOMAIN=b.example \
    ENROLLMENT_TOKEN="$(on B token create --role tunneler --name laptop)" \
    FORWARDS="127.0.0.1:$FWD=pg@a.example" CONNECTOR_RETRY_MIN=50ms \
    CONNECTOR_RETRY_MAX=100ms || return 1
  keep_agent LAPTOP
  wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
}
# wait_list_with LOG N [SECONDS]: until LOG's last connector list has N connectors.
wait_list_with() {
  local i
  for ((i = 0; i < ${3:-10} * 10; i++)); do
    grep 'msg="connector list received"' "$1" | tail -1 | grep -q " connectors=$2 " && return 0
    sleep 0.1
  done
  return 1
}
