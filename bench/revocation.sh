#!/usr/bin/env bash
# Revocation latency: REVOCATION_DENIES (default 1000) denies, each ending a
# live stream, spread over three connectors. A release-build controller,
# connectors dc1..dc3 each serving its own resource r1..r3 (an echo
# server), one tunneler with a forward to each. Cycle i (connector
# k = i mod 3): allow laptop → rk, open a stream through rk's forward and see
# its echo, deny laptop → rk (the tunneler then has no grant left, so each
# connector closes its session), and wait for the stream to end. Read back:
# the controller's changes (GET /api/admin/changes: push → the slowest
# connector's `applied` report, and applied → its last removed session
# closed) and, on the client's side, deny request sent → the stream ended.
# Prints a markdown section. Loopback only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bin"
peer="$root/build/tests/tools/tcp_peer"
denies="${REVOCATION_DENIES:-1000}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
make -C "$root" --no-print-directory "build/tests/tools/tcp_peer" >&2
token="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
env TRUST_DOMAIN=example.org STATE_DIR="$work/ctl" ADMIN_AUTH_TOKEN="$token" \
  CONTROLLER_LISTEN=127.0.0.1:0 ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=127.0.0.1:0 \
  HEARTBEAT_INTERVAL=10s "$bin/controller" >"$work/ctl.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q 'controller started' "$work/ctl.log" && break; sleep 0.05; done
grep -q 'controller started' "$work/ctl.log" || { tail -5 "$work/ctl.log" >&2; exit 1; }
field() { grep -F "$1" "$2" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"; }
ctl_port=$(field 'controller started' "$work/ctl.log" control_port)
export ADMIN_URL="http://127.0.0.1:$(field 'controller started' "$work/ctl.log" admin_port)" ADMIN_AUTH_TOKEN="$token"
"$peer" echo 127.0.0.1:0 >"$work/echo.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'listening' "$work/echo.out" 2>/dev/null && break; sleep 0.05; done
echo_port=$(sed -n 's/^listening port=\([0-9]*\).*/\1/p' "$work/echo.out" | head -1)
[ -n "$echo_port" ] || { cat "$work/echo.out" >&2; exit 1; }
start_agent() { # role name [extra env]
  local role="$1" name="$2" allow=(); shift 2
  [ "$role" = connector ] && allow=(--address 127.0.0.1)
  env ENROLLMENT_TOKEN="$("$bin/controller" token create --role "$role" --name "$name" "${allow[@]}")" \
    CONTROLLER_ADDR="127.0.0.1:$ctl_port" CONTROLLER_CA="$work/ctl/ca/ca-1.crt" \
    TRUST_DOMAIN=example.org STATE_DIR="$work/$name" NODE_NAME="$name" \
    HEALTH_LISTEN=127.0.0.1:0 "$@" "$bin/$role" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
forwards=""
ports=()
for k in 1 2 3; do
  "$bin/controller" resource add "r$k" --connector "dc$k" >/dev/null
  start_agent connector "dc$k" CONNECTOR_LISTEN="127.0.0.1:$((20000 + RANDOM % 20000))" \
    RESOURCES="r$k=127.0.0.1:$echo_port" WORKERS=1
  p=$((20000 + RANDOM % 20000)); ports+=("$p")
  forwards+="${forwards:+,}127.0.0.1:$p=r$k"
done
start_agent tunneler laptop FORWARDS="$forwards" SOCKS5_LISTEN=off CONNECTOR_RETRY_MIN=20ms \
  CONNECTOR_RETRY_MAX=50ms WORKERS=1
for _ in $(seq 200); do
  n=$( (grep -l 'control-plane stream connected' "$work"/dc*.log "$work"/laptop.log 2>/dev/null || true) | wc -l)
  [ "$n" = 4 ] && break; sleep 0.05
done
echo "revocation bench: $denies denies over 3 connectors" >&2
python3 - "$ADMIN_URL" "$token" "$denies" "${ports[@]}" >"$work/client.out" <<'EOF'
import json, socket, sys, time, urllib.request, urllib.parse
url, token, denies = sys.argv[1], sys.argv[2], int(sys.argv[3])
ports = [int(p) for p in sys.argv[4:]]
def api(method, path, body=None):
    req = urllib.request.Request(url + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")
failures = 0
ended = []
deny_versions = []
seen = {}
def collect():
    # The controller keeps the last 1024 changes: read them before they go.
    for c in api("GET", "/api/admin/changes?limit=1024")["changes"]:
        seen[c["id"]] = c
for i in range(denies):
    if i % 200 == 199:
        time.sleep(0.2)   # let the last reports arrive
        collect()
    k = i % 3
    res = "r%d" % (k + 1)
    api("POST", "/api/admin/allowlist", {"tunneler": "laptop", "resource": res})
    s = None
    for attempt in range(200):   # until the connector applied the allow
        try:
            s = socket.create_connection(("127.0.0.1", ports[k]), timeout=5)
            s.sendall(b"x")
            if s.recv(1) == b"x":
                break
        except OSError:
            pass
        if s is not None:
            s.close(); s = None
        time.sleep(0.005)
    if s is None:
        failures += 1
        continue
    t0 = time.monotonic()
    reply = api("DELETE", "/api/admin/allowlist?" +
                urllib.parse.urlencode({"tunneler": "laptop", "resource": res}))
    deny_versions.append(reply.get("version"))
    s.settimeout(5)
    try:
        data = s.recv(1)
        if data:
            failures += 1
    except OSError:
        pass                      # reset: ended
    ended.append((time.monotonic() - t0) * 1000)
    s.close()
time.sleep(1)
collect()
print(json.dumps({"ended_ms": ended, "failures": failures, "deny_versions": deny_versions,
                  "changes": list(seen.values())}))
EOF
python3 - "$work/client.out" "$denies" <<'EOF'
import json, sys
client = json.load(open(sys.argv[1]))
changes = client["changes"]
denies = int(sys.argv[2])
wanted = set(client["deny_versions"])
deny = [c for c in changes if c["id"] in wanted]
incomplete = [c for c in deny if not c["complete"]]
closed_none = [c for c in deny if c["sessions_closed"] == 0]
def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else float("nan")
apply = [c["apply_ms"] for c in deny]
close = [c["close_ms"] for c in deny]
total = [c["apply_ms"] + c["close_ms"] for c in deny]
ended = client["ended_ms"]
print("%d denies, each ending a live stream, over three connectors (release build, one" % denies)
print("worker each, loopback; the controller, the three connectors, the tunneler, the echo")
print("server and the Python driver on this machine's cores). Every allowlist change is pushed")
print("to all three connectors, so each deny is applied three times and closes one session.")
print("Source: `bench/revocation.sh`; figures from `GET /api/admin/changes` (the slowest of")
print("the three connectors per change) and from the client.")
print()
print("| measurement | p50 | p99 | max |")
print("|---|---|---|---|")
print("| push → the slowest connector's `applied` report (controller clock) | %d ms | %d ms | %d ms |" % (pct(apply, 50), pct(apply, 99), max(apply) if apply else -1))
print("| applied → the last removed session closed (connector clock) | %d ms | %d ms | %d ms |" % (pct(close, 50), pct(close, 99), max(close) if close else -1))
print("| push → closed, fleet-wide (target p99 < 100 ms) | **%d ms** | **%d ms** | %d ms |" % (pct(total, 50), pct(total, 99), max(total) if total else -1))
print("| client: deny request sent → its stream ended (includes the admin API call) | %.1f ms | %.1f ms | %.1f ms |" % (pct(ended, 50), pct(ended, 99), max(ended) if ended else -1))
print()
print("Denies measured: %d of %d (each deny's change, by the version the admin API returned);" % (len(deny), denies))
print("not reported by every connector: %d; streams that did not end or never opened: %d." % (len(incomplete), client["failures"]))
print("Denies whose report counted no closed session: %d (the session's close completed after the" % len(closed_none))
print("next change arrived, so that change's report counted it; the stream itself had ended).")
EOF
