#!/usr/bin/env bash
# The connector keeps the controller's allowlist on disk and enforces the
# last one it received while the controller is away (fail-static); /health
# and /metrics say which version and how old it is.
. "$(dirname "$0")/lib.sh"
start_controller ctl || exit 1
ctl resource add pg --connector dc1 >/dev/null
start_agent connector dc1 ENROLLMENT_TOKEN="$(ctl token create --role connector --name dc1 --address 127.0.0.1)" \
  RESOURCES=pg=127.0.0.1:5432
check "connector starts" $?
wait_for_state ONLINE 10; check "connector ONLINE" $?
ctl allow --tunneler laptop --resource pg >/dev/null
wait_for_line "$AGENT_LOG" 'msg="allowlist received" version=2 tunnelers=1' 5
check "the allowlist change reaches the connector" $?
expect_file_mode "$AGENT_STATE/allowlist.json" 600 "allowlist persisted privately"
grep -qF '"spiffe_id":"spiffe://example.org/tunneler/laptop"' "$AGENT_STATE/allowlist.json"
check "the persisted allowlist names the tunneler" $?
health
[[ "$HEALTH_BODY" == *'"allowlist":{"version":2,"tunnelers":1,"age_seconds":'* ]]
check "/health shows the allowlist version" $?

# Controller gone, connector restarted: the list comes back from disk.
stop_agent
stop_controller
start_agent connector dc1
check "connector restarts without the controller" $?
wait_for_line "$AGENT_LOG" 'msg="allowlist loaded from disk" version=2 tunnelers=1' 5
check "fail-static: the last allowlist is loaded from disk" $?
health
[[ "$HEALTH_BODY" == *'"allowlist":{"version":2,"tunnelers":1,'* ]]
check "/health still reports version 2 while the controller is away" $?
run curl -s "$AGENT_HEALTH_URL/metrics"
expect_out_has "ztr_allowlist_version 2" "ztr_allowlist_version exported"
expect_out_has "ztr_allowlist_age_seconds " "ztr_allowlist_age_seconds exported"
stop_agent
finish
