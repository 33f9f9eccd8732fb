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
  local port; port="$(log_value "$CTL_LOG" federation_port)"
  printf -v "${name}_FED" '%s' "127.0.0.1:$port"
}
# on NAME CMD...: runs a controller CLI command against NAME.
on() { local name="$1"; shift; local url="${name}_URL"; ADMIN_URL="${!url}" ctl "$@"; }
# fed_stop NAME: SIGTERM and wait.
fed_stop() { local pid="${1}_PID"; kill -TERM "${!pid}" 2>/dev/null; wait "${!pid}" 2>/dev/null; }
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
