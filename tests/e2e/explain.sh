#!/usr/bin/env bash
# `controller explain`: the trace of why a tunneler may or may not reach a
# resource, with real binaries — every failing step in turn (unknown
# tunneler, unknown resource, bound to no connector, no grant, connector
# not enrolled / OFFLINE, a connector behind on the allowlist, revoked
# tunneler), the certificate's valid-until, the allow verdict, --json's
# fields, and --connector: a real connector's answer over its control
# stream, one that does not answer (2 s), and one that is OFFLINE.
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
start_peer http || exit 1; HTTP_PORT=$PEER_PORT

# explain_has DESCRIPTION TEXT [ARGS...]: explain laptop → web (or ARGS)
# prints TEXT.
explain_has() {
  local what="$1" text="$2"; shift 2
  [ $# -eq 0 ] && set -- --tunneler laptop --resource web
  run ctl explain "$@"
  expect_status 0 "$what: explain answers"
  expect_out_has "$text" "$what"
}

explain_has "unknown tunneler fails first" \
  'verdict=deny first_failure="unknown tunneler: no tunneler named laptop is enrolled"'
expect_out_has 'step=resource ok=false detail="unknown resource: no resource named web"' \
  "unknown resource is a step of its own"

start_agent tunneler laptop ENROLLMENT_TOKEN="$(ctl token create --role tunneler --name laptop)"
check "tunneler starts" $?
keep_agent LAPTOP
wait_for_state ONLINE 10; check "tunneler ONLINE" $?
explain_has "enrolled tunneler, resource unknown" \
  'verdict=deny first_failure="unknown resource: no resource named web"'
expect_out_has 'step=tunneler ok=true detail="laptop is enrolled' "the tunneler step passes"
expect_out_has 'step=certificate ok=true detail="valid until ' "the certificate's valid-until is shown"
expect_out_has 'step=revoked ok=true detail="laptop is not revoked"' "not revoked"

ctl resource add web >/dev/null
explain_has "resource bound to no connector" \
  'verdict=deny first_failure="no connector: resource web is bound to no connector"'

ctl resource bind web --connector dc1 >/dev/null
explain_has "no grant" 'verdict=deny first_failure="no grant: laptop is not allowed to web"'

ctl allow --tunneler laptop --resource web >/dev/null
explain_has "bound connector not enrolled" \
  'verdict=deny first_failure="no bound connector is ONLINE: dc1 not enrolled"'

start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES="web=127.0.0.1:$HTTP_PORT"
check "connector starts" $?
keep_agent DC1
wait_for_state ONLINE 10 "$DC1_URL"; check "connector ONLINE" $?
VERSION=$(ctl allowlist --json | sed -n 's/.*"version":\([0-9]*\).*/\1/p')
# The connector reports the version it applied at once (its `applied`
# report once every data loop enforces it).
for ((i = 0; i < 50; i++)); do
  ctl explain --tunneler laptop --resource web | grep -qF "dc1 at $VERSION" && break
  sleep 0.1
done
explain_has "everything in place" "verdict=allow"
expect_out_has "step=allowlist_applied ok=true detail=\"allowlist version $VERSION (the one with this decision) applied: dc1 at $VERSION\"" \
  "the connector has applied the version with the grant"
expect_out_has 'step=draining ok=true detail="0 of 1 serving connectors draining"' "no connector is draining"
expect_out_has 'step=connectors_online ok=true detail="1 of 1 bound connectors serve web: dc1 ONLINE"' \
  "the serving connector is named"

run ctl explain --tunneler laptop --resource web --json
expect_status 0 "--json answers"
python3 - "$RUN_OUT" "$VERSION" <<'EOF'
import json, sys
j = json.loads(sys.argv[1])
assert j["verdict"] == "allow" and j["first_failure"] is None, j
assert j["tunneler"] == "laptop" and j["resource"] == "web" and j["federated"] is False
assert j["spiffe_id"] == "spiffe://example.org/tunneler/laptop"
assert j["allowlist_version"] == int(sys.argv[2])
assert [s["step"] for s in j["steps"]] == ["tunneler", "certificate", "revoked", "resource",
    "bindings", "grant", "connectors_online", "allowlist_applied", "draining"], j["steps"]
assert all(set(s) == {"step", "ok", "detail"} for s in j["steps"])
c = j["connectors"][0]
assert c == {"name": "dc1", "status": "ONLINE", "announces": True,
             "allowlist_version": int(sys.argv[2]), "applied": True, "draining": False}, c
EOF
check "--json has the documented fields" $?

# ---- a drained connector: the only one serving web, so web is refused ---------------
ctl node drain dc1 >/dev/null 2>&1
explain_has "dc1 drained" 'verdict=deny first_failure="every serving connector is draining: dc1"'
expect_out_has 'step=draining ok=false detail="every serving connector is draining: dc1"' \
  "the draining step names the connector"
ctl node undrain dc1 >/dev/null 2>&1
explain_has "dc1 undrained" "verdict=allow"

# ---- --connector: the connector's own answer -----------------------------------
explain_has "the connector answers: allow" 'verdict=allow' --tunneler laptop --resource web --connector dc1
expect_out_has "step=connector_answer ok=true detail=\"dc1 would allow: allowlist version $VERSION (confirmed " \
  "the connector's applied version and fail-static age"
expect_out_has "tunneler permitted, target 127.0.0.1:$HTTP_PORT\"" "tunneler on its allowlist, the target named"
wait_for_line "$DC1_LOG" 'msg="explain answered" tunneler=spiffe://example.org/tunneler/laptop resource=web verdict=allow' 5
check "the connector logs what it answered" $?
run ctl explain --tunneler laptop --resource web --connector dc1 --json
python3 - "$RUN_OUT" "$VERSION" <<'EOF'
import json, sys
a = json.loads(sys.argv[1])["connector_answer"]
assert a["connector"] == "dc1" and a["answered"] is True and a["verdict"] == "allow", a
assert a["allowlist_version"] == int(sys.argv[2]) and a["permitted"] is True and a["stale"] is False
assert isinstance(a["confirmed_age_seconds"], int) and a["target"].startswith("127.0.0.1:")
EOF
check "--connector --json carries the connector's answer" $?

# A tunneler the connector's allowlist does not hold: asked, it says why it refuses.
explain_has "the connector refuses another tunneler" \
  'first_failure="unknown tunneler: no tunneler named laptop2 is enrolled"' \
  --tunneler laptop2 --resource web --connector dc1
expect_out_has 'step=grant ok=false detail="no grant: laptop2 is not allowed to web"' "no grant for it either"
expect_out_has 'step=connector_answer ok=false detail="connector refuses: dc1 would deny' "the connector's refusal is a step"
expect_out_has 'tunneler not allowed' "with the connector's reason"

# ---- a connector behind on the allowlist, and one that does not answer --------
mkdir -p "$T/dc2"
probe enroll --controller "$CTL_ADDR" --trust-domain example.org --ca "$CTL_STATE/ca/ca-1.crt" \
  --role connector --name dc2 --token "$(ctl token create --role connector --name dc2 --address 127.0.0.1)" \
  --address 127.0.0.1 --out "$T/dc2" >/dev/null
check "a second connector enrolls (a probe that never answers explain)" $?
ctl resource add api --connector dc2 >/dev/null
ctl allow --tunneler laptop --resource api >/dev/null
# It says it enforces allowlist version 1 (older than every grant here).
probe session --controller "$CTL_ADDR" --trust-domain example.org --dir "$T/dc2" --role connector \
  --data-listen "127.0.0.1:$(free_port)" --address 127.0.0.1 --resource api --interval 200 \
  --duration 15000 --send '{"type":"heartbeat","seq":1,"allowlist_version":1}' >"$T/dc2.out" 2>&1 &
PROBE_PID=$!; E2E_PIDS+=("$PROBE_PID")
for ((i = 0; i < 50; i++)); do
  ctl explain --tunneler laptop --resource api | grep -qF "dc2 behind at 1" && break
  sleep 0.1
done
explain_has "connector behind on the allowlist version" \
  'first_failure="allowlist not applied: no serving connector has applied version' --tunneler laptop --resource api
expect_out_has "dc2 behind at 1" "the connector's applied version is named"
START=$(date +%s%N)
explain_has "a connector that does not answer" \
  'step=connector_answer ok=false detail="dc2: connector did not answer within 2s"' \
  --tunneler laptop --resource api --connector dc2
ELAPSED_MS=$((($(date +%s%N) - START) / 1000000))
[ "$ELAPSED_MS" -ge 1900 ] && [ "$ELAPSED_MS" -lt 6000 ]
check "the admin request waited about 2 s (${ELAPSED_MS} ms)" $?
grep -qF '"type":"explain_request"' "$T/dc2.out"
check "the request reached the connector over its control stream" $?
run curl -s -m 5 "$HEALTH_URL/health"
expect_out_has '"status":"ok"' "the controller kept serving meanwhile"
kill "$PROBE_PID" 2>/dev/null; wait "$PROBE_PID" 2>/dev/null

# ---- connector OFFLINE ------------------------------------------------------------
stop_agent "$DC1_PID"
for ((i = 0; i < 50; i++)); do
  ctl explain --tunneler laptop --resource web | grep -qF "dc1 OFFLINE" && break
  sleep 0.1
done
explain_has "connector OFFLINE" 'verdict=deny first_failure="no bound connector is ONLINE: dc1 OFFLINE"' \
  --tunneler laptop --resource web --connector dc1
expect_out_has 'step=connector_answer ok=false detail="dc1: connector is OFFLINE"' "asking an OFFLINE connector says so"

# ---- revoked tunneler -----------------------------------------------------------
LAPTOP_ID=$(ctl node list | grep 'name=laptop ' | sed -n 's/^id=\([^ ]*\) .*/\1/p')
ctl node revoke "$LAPTOP_ID" >/dev/null
explain_has "revoked tunneler" 'verdict=deny first_failure="revoked: laptop was revoked and may reach nothing"'

# ---- bad input ------------------------------------------------------------------
run ctl explain --tunneler 'a/b' --resource web
expect_status 1 "a name that cannot be a tunneler's is refused"
expect_err_has 'field "tunneler"' "the refusal names the field"
run ctl explain --tunneler laptop --resource 'a b'
expect_status 1 "a resource name no resource can have is refused"
expect_err_has 'query parameter "resource" may hold only' "the refusal names the parameter"
run curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/api/admin/explain?tunneler=laptop&resource=web"
expect_out "401" "the admin API wants its token for explain"
finish
