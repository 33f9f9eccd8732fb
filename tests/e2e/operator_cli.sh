#!/usr/bin/env bash
# What an operator's scripts rely on: `--version` on every binary (and the
# same facts in /health and ztr_build_info), `--json` on every controller
# command that lists or shows, `token create --env` for an EnvironmentFile,
# and the CLI's exit statuses (docs/CONTROLLER.md, "Exit statuses").
. "$(dirname "$0")/lib.sh"
T="$E2E_TMP"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"

# jget PYTHON-EXPR [JSON]: evaluates the expression on the parsed JSON (j);
# exit 1 when the text is not one JSON value.
jget() {
  python3 -c 'import json,sys; j=json.loads(sys.argv[2]); v=eval(sys.argv[1]); print(json.dumps(v) if not isinstance(v, str) else v)' \
    "$1" "${2:-$RUN_OUT}" 2>/dev/null
}

# ---- --version ---------------------------------------------------------------------
# The commit the binaries were built from; whether the tree was clean then
# is theirs to say (an edit since the build does not change them).
want_version="$(git -C "$ROOT" describe --always 2>/dev/null || echo 0.0.0-unknown)"
for bin in controller connector tunneler ztr-pki; do
  # A broken configuration must not stand in the way of --version.
  run env HEARTBEAT_INTERVAL=nonsense TRUST_DOMAIN= "$ZTR_TEST_BIN/$bin" --version
  expect_status 0 "$bin --version"
  [[ "$RUN_OUT" =~ ^$bin\ version=[^\ ]+\ wolfssl=[0-9.]+\ wolfssl_asm=[a-z0-9,-]+\ build=(release|asan)$ ]]
  check "$bin --version is one line: program, version, wolfssl, wolfssl_asm, build" $?
  [[ "$RUN_OUT" == *" version=$want_version "* || "$RUN_OUT" == *" version=$want_version-dirty "* ]]
  check "$bin reports git describe of the commit it was built from ($want_version)" $?
done
version_line="$RUN_OUT"
version="$(sed -n 's/.* version=\([^ ]*\) .*/\1/p' <<<"$version_line")"
wolfssl="$(sed -n 's/.* wolfssl=\([^ ]*\) .*/\1/p' <<<"$version_line")"
wolfssl_asm="$(sed -n 's/.* wolfssl_asm=\([^ ]*\) .*/\1/p' <<<"$version_line")"
build="${version_line##*build=}"
# scripts/deps.sh builds wolfSSL with AES-NI and x86-64 assembly there.
if [ -f "$ROOT/.deps/wolfssl/lib/libwolfssl.a" ] && [ "$(uname -m)" = x86_64 ]; then
  [[ ",$wolfssl_asm," == *,aesni,* ]]; check "the project's wolfSSL reports AES-NI on ($wolfssl_asm)" $?
fi
run "$ZTR_TEST_BIN/controller" serve --version
expect_out "controller ${version_line#ztr-pki }" "controller serve --version: the same line"
for bin in controller connector tunneler; do
  run "$ZTR_TEST_BIN/$bin" --help
  grep -qxF "       $bin --version" <<<"$RUN_OUT"; check "$bin --help names --version" $?
done
# controller --help names every command group `controller help` lists.
run "$ZTR_TEST_BIN/controller" --help
help_groups="$(head -5 <<<"$RUN_OUT" | tr -d ' \n' | grep -o 'controller<[a-z|]*>' | tr -d '<>' | sed 's/^controller//')"
missing=""
for group in $("$ZTR_TEST_BIN/controller" help | sed -n 's/^ *controller \([a-z]*\)\( .*\)\{0,1\}$/\1/p' | sort -u); do
  [[ "|$help_groups|" == *"|$group|"* ]] || missing+=" $group"
done
[ -n "$help_groups" ] && [ -z "$missing" ]
check "controller --help names every command group of controller help (missing:${missing:- none})" $?

# ---- the version outside git (scripts/version.sh; the Makefile builds with it) ------
# A `git archive` export (export-subst) reports the commit it came from, even
# unpacked inside another repository; a VERSION file (the package build's
# copy) wins over that; a plain copy reports 0.0.0-unknown.
mkdir -p "$T/export/scripts" "$T/copy/scripts"
if git -C "$ROOT" rev-parse -q --verify HEAD >/dev/null 2>&1; then
  head_version="$(git -C "$ROOT" describe --always HEAD)"
  git -C "$ROOT" archive HEAD scripts/version.sh | tar -x -C "$T/export"
  run bash "$T/export/scripts/version.sh"
  expect_out "$head_version" "a git archive export: the commit it came from"
  git init -q "$T/other" && mkdir -p "$T/other/src" && cp -R "$T/export/scripts" "$T/other/src/"
  run bash "$T/other/src/scripts/version.sh"
  expect_out "$head_version" "an export inside another repository: still its own commit"
  cp "$ROOT/scripts/version.sh" "$T/copy/scripts/"
  run bash "$T/copy/scripts/version.sh"
  expect_out 0.0.0-unknown "a plain copy, outside git: 0.0.0-unknown"
else
  cp "$ROOT/scripts/version.sh" "$T/export/scripts/"   # this tree is itself an export
fi
echo 1.2.3+4+gabcdef >"$T/export/VERSION"
run bash "$T/export/scripts/version.sh"
expect_out 1.2.3+4+gabcdef "a VERSION file: its first line"

# ---- /health and /metrics carry the same facts ---------------------------------------
start_controller ctl || exit 1
build_json="{\"version\": \"$version\", \"wolfssl\": \"$wolfssl\", \"wolfssl_asm\": \"$wolfssl_asm\", \"build\": \"$build\"}"
metric="ztr_build_info{version=\"$version\",wolfssl=\"$wolfssl\",wolfssl_asm=\"$wolfssl_asm\",build=\"$build\"} 1"
run curl -s -m 5 "$HEALTH_URL/health"
[ "$(jget 'j["build"]')" = "$build_json" ]; check "controller /health build object = --version" $?
run curl -s -m 5 "$HEALTH_URL/metrics"
grep -qxF "$metric" <<<"$RUN_OUT"; check "controller /metrics: $metric" $?

# ---- token create --env: an EnvironmentFile line that enrolls -------------------------
run ctl token create --role connector --name dc1 --address 127.0.0.1 --env
expect_status 0 "token create --env"
[[ "$RUN_OUT" =~ ^ENROLLMENT_TOKEN=[0-9a-f]+\.[0-9a-f]+$ ]]
check "--env prints exactly one ENROLLMENT_TOKEN=<token> line" $?
printf '%s\n' "$RUN_OUT" >"$T/dc1.env"
# As systemd reads an EnvironmentFile: KEY=value lines.
start_agent connector dc1 "$(cat "$T/dc1.env")"
check "a connector enrolls with the EnvironmentFile's token" $?
wait_for_state ONLINE 15
check "and comes ONLINE" $?
[ "$(jget 'j["build"]' "$HEALTH_BODY")" = "$build_json" ]; check "connector /health build object = --version" $?
run curl -s -m 5 "$AGENT_HEALTH_URL/metrics"
grep -qxF "$metric" <<<"$RUN_OUT"; check "connector /metrics: $metric" $?

run ctl token create --role tunneler --name laptop --ttl 2h --uses 3 --json
expect_status 0 "token create --json"
for key in token id role name expires_at uses_left; do
  [ -n "$(jget "j[\"$key\"]")" ]; check "token create --json has $key" $?
done
[ "$(jget 'j["name"]')" = laptop ] && [ "$(jget 'j["uses_left"]')" = 3 ]
check "token create --json: name and uses as asked" $?
token_id="$(jget 'j["id"]')"
run ctl token create --role tunneler --name x --env --json
expect_status 2 "--env and --json together are a usage error"
run ctl ca show --pem --json
expect_status 2 "--pem and --json together are a usage error"

# ---- --json on every command that lists or shows --------------------------------------
ctl resource add web --connector dc1 >/dev/null
ctl allow --tunneler laptop --resource web >/dev/null
# command | a Python check of its documented keys
while IFS='|' read -r command expr; do
  read -ra argv <<<"$command"
  run ctl "${argv[@]}" --json
  expect_status 0 "$command --json"
  [ "$(jget "$expr")" = true ]; check "$command --json: $expr" $?
  [ "$(wc -l <<<"$RUN_OUT")" = 1 ]; check "$command --json is one line" $?
done <<'LIST'
token list|any(t["name"] == "laptop" and "token" not in t for t in j["tokens"])
node list|[n["name"] for n in j["nodes"]] == ["dc1"] and j["nodes"][0]["role"] == "connector" and "spiffe_id" in j["nodes"][0]
fleet|j["counts"]["ONLINE"] == 1 and j["nodes"][0]["name"] == "dc1" and "state" in j["nodes"][0]
resource list|j["resources"] == [{"name": "web", "description": "", "created_at": j["resources"][0]["created_at"], "connectors": ["dc1"]}]
allowlist|isinstance(j["version"], int) and j["grants"][0]["tunneler"] == "laptop" and j["grants"][0]["resource"] == "web"
ca show|j["cas"][0]["number"] == 1 and j["bundle"].startswith("-----BEGIN CERTIFICATE-----") and isinstance(j["version"], int)
events --limit 50|any(e["kind"] == "admin" and "token created" in e["detail"] for e in j["events"]) and all(isinstance(e["id"], int) for e in j["events"])
controllers|len(j["controllers"]) == 1 and j["controllers"][0]["self"] is True and j["controllers"][0]["alive"] is True
changes --limit 5|isinstance(j["changes"], list) and all("apply_ms" in c and "complete" in c for c in j["changes"])
explain --tunneler laptop --resource web|j["tunneler"] == "laptop" and j["resource"] == "web" and j["verdict"] in ("allow", "deny") and isinstance(j["steps"], list)
federation list|j == {"peers": []}
federation grants|j == {"grants": []}
LIST
run ctl token list --json
[ "$(jget "any(t['id'] == '$token_id' for t in j['tokens'])")" = true ]
check "token list --json shows the token create --json id" $?
run ctl token list
[[ "$RUN_OUT" == id=* ]]; check "without --json the human key=value lines stay the default" $?
run ctl token delete "$token_id" --json
expect_status 2 "--json on a command that neither lists nor shows is a usage error"

# ---- exit statuses ---------------------------------------------------------------
run ctl node list
expect_status 0 "0: done"
run ctl node revoke no-such-node
expect_status 1 "1: the controller refused the request"
expect_err_has "error: node no-such-node not found" "with the API's reason"
run ctl node lst
expect_status 2 "2: unknown command"
run ctl node list --frobnicate
expect_status 2 "2: unknown option"
run ctl node revoke
expect_status 2 "2: missing argument"
run ctl events --limit many
expect_status 2 "2: a number that is not one"
run env ADMIN_URL="http://127.0.0.1:$(free_port)" "$ZTR_TEST_BIN/controller" node list
expect_status 3 "3: nothing answers at ADMIN_URL"
expect_err_has "connect: connection refused" "with the transport's reason"
run env ADMIN_AUTH_TOKEN=wrong-admin-token-0123456789 "$ZTR_TEST_BIN/controller" node list
expect_status 4 "4: the admin API refuses ADMIN_AUTH_TOKEN"
run env -u ADMIN_AUTH_TOKEN "$ZTR_TEST_BIN/controller" node list
expect_status 2 "2: no ADMIN_AUTH_TOKEN at all"

stop_agent
stop_controller
finish
