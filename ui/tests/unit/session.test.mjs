// The console's login (lib/session.ts): password digests, sessions, CSRF,
// the bound on failed attempts.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const s = require(`${process.env.UI_UNIT_LIB}/session.js`);
const nodes = require(`${process.env.UI_UNIT_LIB}/nodes.js`);

test("password: right, wrong, unset, too short", () => {
  const pw = "correct horse battery";
  assert.equal(s.passwordMatches(pw, pw), true);
  assert.equal(s.passwordMatches("correct horse batterY", pw), false);
  assert.equal(s.passwordMatches("", pw), false);
  assert.equal(s.passwordMatches(pw, undefined), false);
  assert.equal(s.passwordMatches("short", "short"), false, "a password under 12 characters never matches");
  assert.equal(s.passwordMatches("x".repeat(5000), pw), false);
});

test("sessions: created, found, expired, ended; cookie flags", () => {
  const a = s.createSession(1000);
  assert.equal(s.findSession(a.id, 2000)?.id, a.id);
  assert.equal(s.findSession(a.id, 1000 + s.SESSION_TTL_MS), null, "expired");
  const b = s.createSession();
  s.endSession(b.id);
  assert.equal(s.findSession(b.id), null, "logged out");
  assert.equal(s.findSession(undefined), null);
  assert.equal(s.findSession("nope"), null);
  const c = s.createSession();
  const cookie = s.sessionCookie(c, false);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  assert.doesNotMatch(cookie, /Secure/);
  assert.match(s.sessionCookie(c, true), /; Secure$/);
  assert.match(s.clearedCookie(false), /Max-Age=0/);
});

test("CSRF token: only the session's own", () => {
  const a = s.createSession();
  const b = s.createSession();
  assert.equal(s.csrfMatches(a, a.csrf), true);
  assert.equal(s.csrfMatches(a, b.csrf), false);
  assert.equal(s.csrfMatches(a, null), false);
  assert.equal(s.csrfMatches(a, ""), false);
});

test("failed logins: 5 per address per minute, then a wait", () => {
  const now = 10_000_000;
  for (let i = 0; i < s.FAILURES_PER_PEER; i++) {
    assert.equal(s.loginBlockedFor("10.9.9.9", now + i), 0);
    s.recordFailure("10.9.9.9", now + i);
  }
  const wait = s.loginBlockedFor("10.9.9.9", now + 10);
  assert.ok(wait >= 59 && wait <= 60, `wait ${wait}`);
  assert.equal(s.loginBlockedFor("10.9.9.8", now + 10), 0, "another address is not blocked");
  assert.equal(s.loginBlockedFor("10.9.9.9", now + s.FAILURE_WINDOW_MS + 10), 0, "the window passes");
});

test("node status shown: revoked, expired, online, offline", () => {
  const base = { id: "a", name: "n", role: "connector", spiffe_id: "", status: "ONLINE", revoked: false, last_seen: 90,
    cert_serial: "", cert_not_after: 200, enrolled_at: 0, renewal_overdue: false, addresses: [] };
  assert.equal(nodes.shownStatus(base, 100), "ONLINE");
  assert.equal(nodes.shownStatus({ ...base, status: "OFFLINE" }, 100), "OFFLINE");
  assert.equal(nodes.shownStatus(base, 200), "EXPIRED");
  // The controller's EXPIRED (its clock said so first) is shown as it is.
  assert.equal(nodes.shownStatus({ ...base, status: "EXPIRED" }, 100), "EXPIRED");
  assert.equal(nodes.shownStatus({ ...base, status: "EXPIRED", revoked: true }, 100), "REVOKED");
  assert.equal(nodes.shownStatus({ ...base, revoked: true }, 300), "REVOKED");
  assert.equal(nodes.lastSeenText(base, 100), "10 s ago");
  assert.equal(nodes.lastSeenText({ ...base, last_seen: 0 }, 100), "never");
  assert.equal(nodes.expiryText(base, 100), "in 1 min");
});

test("a draining connector is ONLINE, and says it drains and until when", () => {
  const base = { id: "a", name: "dc1", role: "connector", spiffe_id: "", status: "DRAINING", revoked: false,
    last_seen: 90, cert_serial: "", cert_not_after: 100000, enrolled_at: 0, renewal_overdue: false, addresses: [],
    drain: { by: "operator", since: 90, deadline: 700 } };
  assert.equal(nodes.shownStatus(base, 100), "ONLINE");
  assert.equal(nodes.drainText(base, 100), "DRAINING (by the operator, open streams closed in 10 min)");
  assert.equal(nodes.drainText(base, 800), "DRAINING (by the operator, deadline passed: open streams closed)");
  assert.equal(nodes.drainText({ ...base, drain: { by: "shutdown", since: 90, deadline: 105 } }, 100),
    "DRAINING (stopping, open streams closed in 5 s)");
  assert.equal(nodes.drainText({ ...base, status: "ONLINE", drain: null }, 100), null);
  assert.equal(nodes.drainText({ ...base, status: "ONLINE", drain: undefined }, 100), null);
});
