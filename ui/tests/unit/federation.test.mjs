// The Federation page's logic (lib/federation.ts): what the grant form
// sends, what each state looks like and allows.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { grantBody, stateClass, peerActions, grantablePeers, grantsByPeer, heartbeatText, expiryText, tunnelerId } =
  require(`${process.env.UI_UNIT_LIB}/federation.js`);

const FORM = { peer: "b", resource: "pg", tunneler: "spiffe://b.example/tunneler/laptop", cidrs: "", expiry: "never", expiresIn: "2h", expiresAt: "" };
const peer = (over) => ({ id: "1", name: "b", trust_domain: "b.example", url: "", direction: "inbound", state: "active", token_pending: false,
  token_expires_at: 0, bundle_version: 1, last_heartbeat_at: 0, reason: "", created_at: 0, updated_at: 0, ...over });

test("a grant that never expires, from anywhere: only the three names", () => {
  assert.deepEqual(grantBody(FORM), { ok: true, body: { peer: "b", resource: "pg", tunneler: "spiffe://b.example/tunneler/laptop" } });
});

test("CIDRs split on spaces, commas and lines; an expiry as a duration or a UTC time", () => {
  const r = grantBody({ ...FORM, cidrs: " 10.0.0.0/8, 192.168.1.0/24\n127.0.0.1/32 ", expiry: "in", expiresIn: " 2h " });
  assert.deepEqual(r.body.source_cidrs, ["10.0.0.0/8", "192.168.1.0/24", "127.0.0.1/32"]);
  assert.equal(r.body.expires_in, "2h");
  assert.equal(r.body.expires_at, undefined);
  const at = grantBody({ ...FORM, expiry: "at", expiresAt: "2030-01-02T03:04:05" });
  assert.equal(at.body.expires_at, Date.UTC(2030, 0, 2, 3, 4, 5) / 1000);
  assert.equal(at.body.expires_in, undefined);
  assert.equal(grantBody({ ...FORM, expiry: "at", expiresAt: "2030-01-02T03:04" }).body.expires_at, Date.UTC(2030, 0, 2, 3, 4) / 1000);
});

test("what the page alone knows is missing is said, and nothing is sent", () => {
  assert.deepEqual(grantBody({ ...FORM, peer: "" }), { ok: false, message: "Choose a peer." });
  assert.deepEqual(grantBody({ ...FORM, resource: "" }), { ok: false, message: "Choose a resource." });
  assert.match(grantBody({ ...FORM, tunneler: "  " }).message, /^Give the tunneler's SPIFFE ID/);
  assert.match(grantBody({ ...FORM, expiry: "in", expiresIn: "" }).message, /^Give how long/);
  assert.equal(grantBody({ ...FORM, expiry: "at", expiresAt: "2030-02-30T00:00" }).ok, false);
  assert.equal(grantBody({ ...FORM, expiry: "at", expiresAt: "" }).ok, false);
});

test("a foreign trust domain is the controller's to refuse, not silently fixed", () => {
  const r = grantBody({ ...FORM, tunneler: "spiffe://c.example/tunneler/laptop" });
  assert.equal(r.body.tunneler, "spiffe://c.example/tunneler/laptop");
});

test("states in the node states' colours; the steps to active plain", () => {
  assert.equal(stateClass("active"), "status status-online");
  assert.equal(stateClass("degraded"), "status status-offline");
  assert.equal(stateClass("suspended"), "status status-expired");
  assert.equal(stateClass("revoked"), "status status-revoked");
  for (const s of ["proposed", "accepted", "enrolled", "something-new"]) assert.equal(stateClass(s), "status");
});

test("actions follow the state", () => {
  assert.deepEqual(peerActions(peer({ state: "proposed" })), { token: true, suspend: true, resume: false, revoke: true });
  assert.deepEqual(peerActions(peer({ state: "active" })), { token: false, suspend: true, resume: false, revoke: true });
  assert.deepEqual(peerActions(peer({ state: "suspended" })), { token: false, suspend: false, resume: true, revoke: true });
  assert.deepEqual(peerActions(peer({ state: "revoked" })), { token: false, suspend: false, resume: false, revoke: false });
});

test("only live peers with a known trust domain can be granted to; grants grouped by peer", () => {
  const ps = [peer({ name: "b" }), peer({ name: "c", trust_domain: "", state: "proposed" }), peer({ name: "d", state: "revoked" })];
  assert.deepEqual(grantablePeers(ps).map((p) => p.name), ["b"]);
  const g = grantsByPeer([{ id: "1", peer: "b" }, { id: "2", peer: "x" }, { id: "3", peer: "b" }]);
  assert.deepEqual([...g.keys()], ["b", "x"]);
  assert.deepEqual(g.get("b").map((x) => x.id), ["1", "3"]);
  assert.equal(tunnelerId(ps[0], "laptop"), "spiffe://b.example/tunneler/laptop");
  assert.equal(tunnelerId(ps[1], "laptop"), "");
});

test("heartbeat age and grant expiry in words", () => {
  assert.equal(heartbeatText(peer({})), "never");
  assert.equal(heartbeatText(peer({ last_heartbeat_age_s: 0 })), "0 s ago");
  assert.equal(heartbeatText(peer({ last_heartbeat_age_s: 301 })), "5 min ago");
  assert.equal(expiryText({ expires_at: 0 }, 100), "never");
  assert.equal(expiryText({ expires_at: 7300 }, 100), "1970-01-01T02:01:40Z (in 2 h 0 min)");
  assert.equal(expiryText({ expires_at: 100 }, 160), "1970-01-01T00:01:40Z (1 min ago)");
});
