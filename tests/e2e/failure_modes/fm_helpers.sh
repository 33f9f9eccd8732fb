# shellcheck shell=bash
# Helpers shared by the failure-mode scripts (on top of ../lib.sh and fm.sh).
# Source after both:  . "$(dirname "$0")/fm_helpers.sh"

# fm_seen_re FILE REGEX DESCRIPTION: like fm_seen for a symptom whose text
# in the document has a placeholder (`cannot parse URI ... invalid domain`):
# the first line of FILE matching the extended REGEX is recorded as seen.
fm_seen_re() {
  local file="$1" re="$2" line
  line="$(grep -E -m1 -- "$re" "$file" 2>/dev/null)"
  [ -n "$line" ] && FM_SEEN="$line"
  [ -n "$line" ]; check "symptom shown: $3 (/$re/)" $?
}

# fm_seen_also FILE TEXT: for a mode whose symptom has alternatives
# (`A` or `B`): finds TEXT verbatim in FILE and appends what was seen to
# FM_SEEN (" ; " between alternatives), so the table shows every alternative
# reproduced. What is recorded is the log field that carries TEXT
# (error="..." / reason="..." / msg="..."), verbatim, or else the whole line.
fm_seen_also() {
  local file="$1" text="$2" line field
  line="$(grep -F -m1 -- "$text" "$file" 2>/dev/null)"
  if [ -n "$line" ]; then
    field="$(grep -oE '[a-z_]+="[^"]*' <<<"$line" | grep -F -m1 -- "$text")"
    [ -n "$field" ] && line="$field\""
    if [ -n "$FM_SEEN" ]; then FM_SEEN="$FM_SEEN ; $line"; else FM_SEEN="$line"; fi
  fi
  [ -n "$line" ]; check "symptom shown verbatim: $text" $?
}

# fm_trim: drops the ts=/level= prefix of every log line recorded in
# FM_SEEN (the text after it is untouched), so the table shows the symptom.
fm_trim() {
  FM_SEEN="$(sed -E 's/(^| ; )ts=[^ ]* level=[a-z]* /\1/g' <<<"$FM_SEEN")"
}

# node_field NAME FIELD: FIELD of node NAME in `controller node list`.
node_field() {
  ctl node list | grep -F " name=$1 " | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

# wait_node_status NAME STATUS [SECONDS]: polls the admin API (node list)
# until node NAME has STATUS.
wait_node_status() {
  local name="$1" want="$2" limit="${3:-10}" i
  for ((i = 0; i < limit * 10; i++)); do
    [ "$(node_field "$name" status)" = "$want" ] && return 0
    sleep 0.1
  done
  return 1
}

# status_events NODE_ID: the ONLINE/OFFLINE sequence of a node in
# `controller events` ("ONLINE OFFLINE ONLINE ").
status_events() {
  ctl events --limit 1000 | grep -F "kind=status node=$1 " |
    sed -n 's/.*detail="\([A-Z]*\).*/\1/p' | tr '\n' ' '
}

# admin_get PATH: GET $ADMIN_URL/PATH with the bearer token (body on stdout).
admin_get() {
  curl -s -m 5 -H "Authorization: Bearer $ADMIN_AUTH_TOKEN" "$ADMIN_URL/$1"
}

# dp_setup: the data plane of dataplane_identity.sh — a controller, an HTTP
# resource "web", connector dc1 serving it, tunneler laptop allowed to it
# with a port forward on 127.0.0.1:$FWD. Sets DC1_* and LAPTOP_* (keep_agent),
# DC1_ENV (to restart the connector), HTTP_PORT, FWD. Extra VAR=value pairs
# go to the controller.
dp_setup() {
  start_controller ctl "$@" || return 1
  start_peer http || return 1; HTTP_PORT=$PEER_PORT
  ctl resource add web --connector dc1 >/dev/null
  start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
    RESOURCES="web=127.0.0.1:$HTTP_PORT" || return 1
  keep_agent DC1
  DC1_ENV=("${AGENT_ENV[@]}")
  ctl allow --tunneler laptop --resource web >/dev/null
  FWD=$(free_port)
  start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)" \
    FORWARDS="127.0.0.1:$FWD=web" SOCKS5_LISTEN=off CONNECTOR_RETRY_MIN=50ms \
    CONNECTOR_RETRY_MAX=100ms || return 1
  keep_agent LAPTOP
  wait_for_line "$LAPTOP_LOG" 'msg="connector list received"' 10
}

# ctl_ca_dir: the controller's first CA in the layout ztr-pki reads
# ($E2E_TMP/ctl-ca/ca.crt + ca.key); prints the directory.
ctl_ca_dir() {
  local d="$E2E_TMP/ctl-ca"
  mkdir -p "$d"
  cp "$CTL_STATE/ca/ca-1.crt" "$d/ca.crt"; cp "$CTL_STATE/ca/ca-1.key" "$d/ca.key"
  echo "$d"
}


