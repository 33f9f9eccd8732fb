#!/usr/bin/env bash
# Attack: take a connector out of every tunneler's list without being the
# operator — a tunneler, or another connector, sends the control plane's
# `drain` message, or a connector the operator drained declares itself
# serving again, or someone calls the admin API's drain without the admin
# token. Only the admin API (with its token) drains or undrains a
# connector; a connector's own `drain` names no node and marks only itself
# (it is how it stops cleanly); a tunneler's is a protocol violation that
# closes its session; a connector cannot lift the operator's drain.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
ctl resource add pg --connector dc1 --connector dc2 >/dev/null
ctl allow --tunneler laptop --resource pg >/dev/null

enroll() { # enroll ROLE NAME
  local allow=()
  [ "$1" = connector ] && allow=(--address 127.0.0.1)
  mkdir -p "$T/$2"
  run probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CA" \
    --token "$(ctl token create --role "$1" --name "$2" "${allow[@]}")" --role "$1" --name "$2" \
    --address 127.0.0.1 --out "$T/$2"
  expect_status 0 "$1 $2 enrolls"
}
enroll connector dc1
enroll connector dc2
enroll tunneler laptop

connector_session() { # connector_session NAME DATA_PORT [ctl-probe flags...]
  local name="$1" port="$2"; shift 2
  SESSION_OUT="$T/$name.$RANDOM.out"
  "$ZTR_TEST_BIN/../tests/tools/ctl_probe" session --controller "$CTL_ADDR" \
    --trust-domain example.org --role connector --dir "$T/$name" --resource pg \
    --data-listen "127.0.0.1:$port" --interval 200 --duration 20000 "$@" >"$SESSION_OUT" 2>&1 &
  E2E_PIDS+=("$!")
}
connector_session dc1 7444
DC1_OUT=$SESSION_OUT
wait_for_line "$DC1_OUT" '"type":"welcome"' 10; check "dc1 says hello" $?
node_field() { # node_field NAME EXPR: a field of the node in `node list --json`
  ctl node list --json | python3 -c "import json,sys; n=[n for n in json.load(sys.stdin)['nodes'] if n['name']==sys.argv[1]][0]; print($2)" "$1"
}

# ---- a tunneler sends drain ----------------------------------------------------------
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role tunneler \
  --dir "$T/laptop" --send '{"type":"drain","state":"draining"}' --duration 5000
grep -qF 'unexpected message' <<<"$RUN_OUT$RUN_ERR"
check "a tunneler's drain is refused: unexpected message" $?
grep -qF 'closed:' <<<"$RUN_OUT$RUN_ERR"; check "and its session is closed" $?
[ "$(node_field dc1 'n["status"]')" = ONLINE ] && [ "$(node_field dc1 'n["drain"]')" = None ]
check "dc1 is not draining after the tunneler's drain" $?

# ---- another connector sends drain: it drains itself, never dc1 ----------------------
connector_session dc2 7445 --send '{"type":"drain","state":"draining","deadline":1}'
wait_for_line "$CTL_LOG" 'msg="connector draining before it stops"' 10
check "dc2's own drain is recorded" $?
[ "$(node_field dc2 'n["drain"]["by"]')" = shutdown ]; check "dc2 is marked draining itself" $?
[ "$(node_field dc1 'n["drain"]')" = None ]; check "dc1 is not draining after dc2's drain" $?
run probe session --controller "$CTL_ADDR" --trust-domain example.org --role tunneler \
  --dir "$T/laptop" --until connectors --duration 5000
list=$(grep '"type":"connectors"' <<<"$RUN_OUT" | tail -1)
python3 -c 'import json,sys; c={x["id"].split("/")[-1]: x for x in json.loads(sys.argv[1])["connectors"]}; sys.exit(not any("connector/dc1" in x["spiffe_id"] and "draining" not in x for x in c.values()))' "$list"
check "laptop's list keeps dc1 without a drain mark" $?

# ---- a connector the operator drained cannot undrain itself ------------------------
run ctl node drain dc1 --deadline 1h
expect_status 0 "the operator drains dc1"
wait_for_line "$DC1_OUT" '"type":"drain"' 10; check "dc1 gets the drain" $?
connector_session dc1 7444 --send '{"type":"drain","state":"serving"}'
wait_for_line "$SESSION_OUT" 'a connector may only announce that it drains' 10
check "a connector's drain state=serving is refused" $?
[ "$(node_field dc1 'n["drain"]["by"]')" = operator ]; check "dc1 stays drained by the operator" $?
# Nor does its own drain (or a reconnect after a stop) replace the operator's.
connector_session dc1 7444 --send '{"type":"drain","state":"draining","deadline":1}'
sleep 1
[ "$(node_field dc1 'n["drain"]["by"]')" = operator ] && [ "$(node_field dc1 'n["drain"]["deadline"]')" -gt 1 ]
check "dc1's own drain leaves the operator's drain and deadline as they were" $?

# ---- the admin API without its token ------------------------------------------------
DC1_ID=$(node_field dc1 'n["id"]')
for verb in drain undrain; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "$ADMIN_URL/api/admin/nodes/$DC1_ID/$verb")
  [ "$code" = 401 ]; check "POST /nodes/ID/$verb without the admin token: 401 ($code)" $?
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer wrong' -d '{}' \
    "$ADMIN_URL/api/admin/nodes/$DC1_ID/$verb")
  [ "$code" = 401 ]; check "POST /nodes/ID/$verb with a wrong token: 401 ($code)" $?
done
[ "$(node_field dc1 'n["drain"]["by"]')" = operator ]; check "dc1 is still drained" $?
# Only connectors drain.
LAPTOP_ID=$(node_field laptop 'n["id"]')
run ctl node drain "$LAPTOP_ID"
[ "$RUN_STATUS" -ne 0 ] && grep -q "only connectors drain" <<<"$RUN_ERR"
check "a tunneler cannot be drained" $?
run ctl node undrain dc1
expect_status 0 "the operator undrains dc1"
[ "$(node_field dc1 'n["drain"]')" = None ]; check "dc1 serves again" $?
finish
