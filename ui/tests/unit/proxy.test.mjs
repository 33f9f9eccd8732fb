// The /api/admin/* proxy (lib/proxy.ts) against fake and real upstreams:
// routes, status mapping, timeouts, an unreachable controller.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const lib = process.env.UI_UNIT_LIB;
const { proxyAdmin, matchRoute, adminConfig, CONFIG_ERROR } = require(`${lib}/proxy.js`);

const CFG = { url: "http://127.0.0.1:9", token: "secret-admin-token-0123456789" };
const get = (path, search = "") => ({ method: "GET", segments: path.split("/"), search });

// A fetch that answers STATUS with BODY and records what it was asked.
function fakeFetch(status, body, seen = []) {
  return async (url, init) => {
    seen.push({ url, init });
    return new Response(body, { status, headers: { "content-type": "application/json" } });
  };
}

// A real HTTP server on a kernel-chosen loopback port.
// Closed when the test ends, whether it passed or not.
async function upstream(handler, t) {
  const server = createServer(handler);
  t.after(() => { server.close(); server.closeAllConnections(); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }) };
}

test("missing ADMIN_API_URL or ADMIN_AUTH_TOKEN: 500 with the failure-modes text", async () => {
  assert.equal(adminConfig({}), null);
  assert.equal(adminConfig({ ADMIN_API_URL: "http://127.0.0.1:8080" }), null);
  assert.equal(adminConfig({ ADMIN_AUTH_TOKEN: "x".repeat(20) }), null);
  assert.equal(adminConfig({ ADMIN_API_URL: " ", ADMIN_AUTH_TOKEN: "x".repeat(20) }), null);
  assert.deepEqual(adminConfig({ ADMIN_API_URL: "http://h:1/", ADMIN_AUTH_TOKEN: "t" }), { url: "http://h:1", token: "t" });
  const r = await proxyAdmin(get("nodes"), null);
  assert.equal(r.status, 500);
  assert.equal(r.body, `{"error":"${CONFIG_ERROR}"}`);
  assert.equal(CONFIG_ERROR, "ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured");
});

test("routes: the admin API's paths and methods, nothing else", () => {
  assert.equal(matchRoute("GET", ["nodes"]).kind, "ok");
  assert.equal(matchRoute("get", ["nodes", "0123456789abcdef"]).kind, "ok");
  assert.equal(matchRoute("POST", ["nodes", "0123456789abcdef", "revoke"]).kind, "ok");
  assert.equal(matchRoute("DELETE", ["resources", "web", "connectors"]).kind, "ok");
  assert.equal(matchRoute("GET", ["explain"]).kind, "ok");
  assert.equal(matchRoute("POST", ["explain"]).kind, "method");
  assert.equal(matchRoute("POST", ["ca", "rotate"]).kind, "ok");
  assert.equal(matchRoute("GET", ["fleet"]).kind, "ok");
  assert.equal(matchRoute("GET", ["controllers"]).kind, "ok");
  assert.equal(matchRoute("GET", ["federation", "peers"]).kind, "ok");
  assert.equal(matchRoute("POST", ["federation", "peers"]).kind, "ok");
  assert.equal(matchRoute("GET", ["federation", "peers", "b"]).kind, "ok");
  for (const action of ["token", "suspend", "resume", "revoke"])
    assert.equal(matchRoute("POST", ["federation", "peers", "b", action]).kind, "ok");
  assert.deepEqual(matchRoute("DELETE", ["federation", "peers", "b"]), { kind: "method", allowed: ["GET"] });
  assert.equal(matchRoute("POST", ["federation", "peers", "b", "frobnicate"]).kind, "no-route");
  assert.equal(matchRoute("POST", ["federation", "accept"]).kind, "ok");
  assert.deepEqual(matchRoute("GET", ["federation", "accept"]), { kind: "method", allowed: ["POST"] });
  // Grants: the list (by peer in the query), add, and delete by id; nothing wider.
  assert.equal(matchRoute("GET", ["federation", "grants"]).kind, "ok");
  assert.equal(matchRoute("POST", ["federation", "grants"]).kind, "ok");
  assert.equal(matchRoute("DELETE", ["federation", "grants", "f7f9d47fb1f74323"]).kind, "ok");
  assert.deepEqual(matchRoute("DELETE", ["federation", "grants"]), { kind: "method", allowed: ["GET", "POST"] });
  assert.deepEqual(matchRoute("GET", ["federation", "grants", "f7f9d47fb1f74323"]), { kind: "method", allowed: ["DELETE"] });
  assert.deepEqual(matchRoute("POST", ["federation", "grants", "f7f9d47fb1f74323"]), { kind: "method", allowed: ["DELETE"] });
  assert.equal(matchRoute("DELETE", ["federation", "grants", ".."]).kind, "no-route");
  assert.equal(matchRoute("DELETE", ["federation", "grants", "x", "y"]).kind, "no-route");
  assert.equal(matchRoute("DELETE", ["federation", "grants", "a/b"]).kind, "no-route");
  assert.deepEqual(matchRoute("POST", ["fleet"]), { kind: "method", allowed: ["GET"] });
  assert.deepEqual(matchRoute("DELETE", ["controllers"]), { kind: "method", allowed: ["GET"] });
  assert.equal(matchRoute("GET", ["nope"]).kind, "no-route");
  assert.equal(matchRoute("GET", ["nodes", ".."]).kind, "no-route");
  assert.equal(matchRoute("GET", ["nodes", "a/b"]).kind, "no-route");
  assert.equal(matchRoute("GET", []).kind, "no-route");
  assert.deepEqual(matchRoute("PUT", ["nodes"]), { kind: "method", allowed: ["GET"] });
});

test("unknown path: 404 without asking the controller", async () => {
  const seen = [];
  const r = await proxyAdmin(get("nope"), CFG, { fetch: fakeFetch(200, "{}", seen) });
  assert.equal(r.status, 404);
  assert.match(JSON.parse(r.body).error, /^not found: the console has no route GET \/api\/admin\/nope$/);
  assert.equal(seen.length, 0);
  const m = await proxyAdmin({ method: "PUT", segments: ["nodes"], search: "" }, CFG, { fetch: fakeFetch(200, "{}", seen) });
  assert.equal(m.status, 405);
  assert.equal(seen.length, 0);
});

test("forwards with the bearer token, the query, the body; answers pass through", async () => {
  const seen = [];
  const r = await proxyAdmin(get("events", "?after=5&limit=2"), CFG, { fetch: fakeFetch(200, '{"events":[]}', seen) });
  assert.deepEqual(r, { status: 200, body: '{"events":[]}' });
  assert.equal(seen[0].url, "http://127.0.0.1:9/api/admin/events?after=5&limit=2");
  assert.equal(seen[0].init.headers.authorization, `Bearer ${CFG.token}`);
  assert.equal(seen[0].init.redirect, "manual");
  const p = await proxyAdmin({ method: "POST", segments: ["tokens"], search: "", body: '{"role":"tunneler","name":"x"}' }, CFG, {
    fetch: fakeFetch(201, '{"token":"t"}', seen),
  });
  assert.equal(p.status, 201);
  assert.equal(seen[1].init.method, "POST");
  assert.equal(seen[1].init.body, '{"role":"tunneler","name":"x"}');
  assert.equal(seen[1].init.headers["content-type"], "application/json");
  for (const status of [400, 404, 405, 409]) {
    const e = await proxyAdmin(get("nodes"), CFG, { fetch: fakeFetch(status, '{"error":"x"}') });
    assert.deepEqual(e, { status, body: '{"error":"x"}' }, `status ${status} passes through`);
  }
});

test("status mapping: 401 from the controller, 5xx, redirects, non-JSON", async () => {
  const logged = [];
  const log = (level, msg, fields) => logged.push({ level, msg, fields });
  const u = await proxyAdmin(get("nodes"), CFG, { fetch: fakeFetch(401, '{"error":"unauthorized"}'), log });
  assert.equal(u.status, 502, "a wrong ADMIN_AUTH_TOKEN is the server's problem, not the operator's session");
  assert.match(JSON.parse(u.body).error, /refused the console's ADMIN_AUTH_TOKEN \(401 unauthorized\)/);
  assert.ok(!u.body.includes(CFG.token));
  const f = await proxyAdmin(get("nodes"), CFG, { fetch: fakeFetch(500, '{"error":"database is locked"}'), log });
  assert.deepEqual(JSON.parse(f.body), { error: "the controller failed (500): database is locked" });
  assert.equal(f.status, 502);
  const rd = await proxyAdmin(get("nodes"), CFG, { fetch: fakeFetch(302, "") });
  assert.equal(rd.status, 502);
  assert.match(JSON.parse(rd.body).error, /redirect/);
  const h = await proxyAdmin(get("nodes"), CFG, { fetch: fakeFetch(200, "<html>hello</html>") });
  assert.equal(h.status, 502);
  assert.match(JSON.parse(h.body).error, /not JSON/);
  const nf = await proxyAdmin(get("nodes"), CFG, { fetch: fakeFetch(404, "<html>404</html>"), log });
  assert.equal(nf.status, 404);
  assert.match(JSON.parse(nf.body).error, /^404 Not Found from http:\/\/127\.0\.0\.1:9/);
  assert.ok(logged.some((l) => l.msg === "404 Not Found"), "a 404 from the controller is logged as 404 Not Found");
});

test("controller down: a clear 502, not a crash", async (t) => {
  const s = await upstream(() => {}, t);
  const url = s.url;
  await s.close(); // nothing listens there now
  const logged = [];
  const r = await proxyAdmin(get("nodes"), { ...CFG, url }, { log: (level, msg, fields) => logged.push({ msg, fields }) });
  assert.equal(r.status, 502);
  assert.deepEqual(JSON.parse(r.body), { error: `cannot reach the controller at ${url}: connection refused` });
  assert.equal(logged[0].msg, "controller unreachable");
  assert.ok(!JSON.stringify(logged).includes(CFG.token), "the token is never logged");
});

test("controller too slow: 504 after the timeout", async (t) => {
  const s = await upstream(() => {}, t); // accepts, never answers
  const start = Date.now();
  const r = await proxyAdmin(get("nodes"), { ...CFG, url: s.url }, { timeoutMs: 300 });
  const took = Date.now() - start;
  await s.close();
  assert.equal(r.status, 504);
  assert.equal(JSON.parse(r.body).error, `the controller did not answer within 0.3 s (ADMIN_API_URL=${s.url})`);
  assert.ok(took >= 250 && took < 3000, `took ${took} ms`);
});

test("a real upstream: the token is sent, odd segments refused, a large answer bounded", async (t) => {
  let auth = "";
  let path = "";
  const s = await upstream((req, res) => {
    auth = req.headers.authorization ?? "";
    path = req.url ?? "";
    res.setHeader("content-type", "application/json");
    res.end(req.url.startsWith("/api/admin/events") ? JSON.stringify({ big: "x".repeat(4096) }) : '{"nodes":[]}');
  }, t);
  const ok = await proxyAdmin(get("nodes"), { ...CFG, url: s.url + "/" });
  assert.deepEqual(ok, { status: 200, body: '{"nodes":[]}' });
  assert.equal(auth, `Bearer ${CFG.token}`);
  assert.equal(path, "/api/admin/nodes");
  const big = await proxyAdmin(get("events"), { ...CFG, url: s.url }, { maxBodyBytes: 1024 });
  assert.equal(big.status, 502);
  assert.match(JSON.parse(big.body).error, /larger than the console accepts/);
  const odd = await proxyAdmin({ method: "DELETE", segments: ["tokens", "a b?x=1"], search: "" }, { ...CFG, url: s.url });
  assert.equal(odd.status, 404, "a segment the admin API cannot have never reaches it");
  assert.equal(path, "/api/admin/events");
  await s.close();
});

test("a wrong ADMIN_API_URL prefix (failure mode 6.1): the controller's 404 is passed on and logged", async (t) => {
  const s = await upstream((req, res) => {
    res.writeHead(404, { "content-type": "application/json" });
    res.end('{"error":"not found"}');
  }, t);
  const logged = [];
  const r = await proxyAdmin(get("nodes"), { ...CFG, url: s.url + "/ui" }, { log: (level, msg, fields) => logged.push({ level, msg, fields }) });
  await s.close();
  assert.deepEqual(r, { status: 404, body: '{"error":"not found"}' });
  assert.equal(logged[0].msg, "404 Not Found");
  assert.equal(logged[0].fields.upstream, `GET ${s.url}/ui/api/admin/nodes`);
});
