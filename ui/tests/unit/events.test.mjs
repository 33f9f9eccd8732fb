// The Events page and a node's timeline ask the controller for one page of
// filtered events per call (lib/events.ts): the query built from what the
// operator typed, bad input refused before it is sent, the cursor of the
// next page, and the page's own URL query.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { eventsQuery, eventPage, pageQuery, filterFromQuery, utcSeconds, NO_FILTER, KINDS, MAX_LIMIT } = require(`${process.env.UI_UNIT_LIB}/events.js`);

const params = (q) => Object.fromEntries(new URLSearchParams(q.query));

test("the query: newest first, one row more than the page, only the filters set", () => {
  const q = eventsQuery(NO_FILTER, null, 50);
  assert.equal(q.ok, true);
  assert.deepEqual(params(q), { order: "desc", limit: "51" });

  const all = eventsQuery({ node: "5e9342390a570968", kind: "admin", since: "2026-11-23T14:00", until: "2026-11-23T14:24:28" }, 120, 5);
  assert.deepEqual(params(all), {
    order: "desc",
    limit: "6",
    node: "5e9342390a570968",
    kind: "admin",
    since: String(Date.UTC(2026, 10, 23, 14, 0, 0) / 1000),
    // To includes its own second; the controller's until is exclusive.
    until: String(Date.UTC(2026, 10, 23, 14, 24, 29) / 1000),
    before: "120",
  });
});

test("times are UTC, to the second; impossible dates are not times", () => {
  assert.equal(utcSeconds(""), null);
  assert.equal(utcSeconds("1970-01-01T00:00"), 0);
  assert.equal(utcSeconds("2026-12-04T23:28:38"), 1796426918);
  assert.equal(utcSeconds("2026-12-04T23:28:38.5"), 1796426918);
  for (const bad of ["yesterday", "2026-02-30T00:00", "2026-13-01T00:00", "2026-01-01T24:00", "2026-01-01 10:00", "1969-12-31T23:59:59", "2026-01-01T10:00Z"])
    assert.equal(utcSeconds(bad), undefined, bad);
});

test("bad input is refused with a clear message and not sent", () => {
  const refused = (filter, before = null, size = 50) => {
    const q = eventsQuery({ ...NO_FILTER, ...filter }, before, size);
    assert.equal(q.ok, false, JSON.stringify(filter));
    assert.equal(q.query, undefined);
    return q;
  };
  const range = refused({ since: "2026-11-23T14:00", until: "2026-11-23T13:59:59" });
  assert.equal(range.field, "range");
  assert.equal(range.message, "To (2026-11-23T13:59:59) is before From (2026-11-23T14:00): no event can match.");
  // One second is a range: To includes it.
  assert.equal(eventsQuery({ ...NO_FILTER, since: "2026-11-23T14:00", until: "2026-11-23T14:00" }, null, 5).ok, true);

  assert.match(refused({ since: "2026-02-30T00:00" }).message, /^From "2026-02-30T00:00" is not a date and time/);
  assert.equal(refused({ until: "soon" }).field, "until");
  const node = refused({ node: "../nodes" });
  assert.equal(node.field, "node");
  assert.match(node.message, /^Node "\.\.\/nodes" is not a node id/);
  assert.equal(refused({ node: "a".repeat(33) }).field, "node");
  assert.equal(refused({ node: "aa&kind=admin" }).field, "node", "no parameter smuggled in");
  const kind = refused({ kind: "bogus" });
  assert.equal(kind.field, "kind");
  assert.match(kind.message, /^Kind "bogus" is not an event kind \(admin, alert, /);
  assert.equal(refused({}, 0).field, "before");
  assert.equal(refused({}, 1.5).field, "before");
  assert.equal(refused({}, null, 0).field, "size");
  assert.equal(refused({}, null, MAX_LIMIT).field, "size", "size + 1 must stay within the controller's cap");
  assert.equal(eventsQuery(NO_FILTER, null, MAX_LIMIT - 1).ok, true);
  for (const k of KINDS) assert.equal(eventsQuery({ ...NO_FILTER, kind: k }, null, 5).ok, true, k);
});

// What the controller answers to eventsQuery: rows newest first, below the
// cursor, matching, at most `limit` (size + 1).
function answer(rows, q) {
  const p = params(q);
  const before = p.before === undefined ? Infinity : Number(p.before);
  return rows
    .filter((e) => e.id < before && (p.node === undefined || e.node_id === p.node) && (p.kind === undefined || e.kind === p.kind))
    .sort((a, b) => b.id - a.id)
    .slice(0, Number(p.limit));
}

test("paging: the cursor is the last row shown, and none once nothing older is left", () => {
  const rows = [];
  for (let id = 101; id <= 212; id++) rows.push({ id, at: id, kind: id % 3 === 0 ? "admin" : "status", node_id: id % 2 === 0 ? "aa" : "bb", detail: `e${id}` });
  const filter = { ...NO_FILTER, node: "aa", kind: "admin" }; // ids divisible by 6: 102..210, 19 of them
  const seen = [];
  let before = null;
  let calls = 0;
  do {
    const q = eventsQuery(filter, before, 5);
    calls++;
    const page = eventPage(answer(rows, q), 5);
    assert.ok(page.events.length <= 5);
    seen.push(...page.events.map((e) => e.id));
    before = page.before;
    if (before !== null) assert.equal(before, page.events.at(-1).id);
  } while (before !== null);
  assert.equal(calls, 4, "19 events in pages of 5: four calls, no empty fifth page");
  assert.deepEqual(seen, rows.filter((e) => e.id % 6 === 0).map((e) => e.id).reverse());

  assert.deepEqual(eventPage([], 5), { events: [], before: null });
  const exact = rows.slice(0, 5).reverse();
  assert.deepEqual(eventPage(exact, 5), { events: exact, before: null }, "exactly a page: nothing older");
});

test("the page's URL query: what is set, read back the same; malformed values kept for the message", () => {
  const filter = { node: "5e93", kind: "denied", since: "2026-11-23T14:00", until: "" };
  const q = pageQuery(filter, 20);
  assert.equal(q, "?node=5e93&kind=denied&since=2026-11-23T14%3A00&size=20");
  assert.deepEqual(filterFromQuery(Object.fromEntries(new URLSearchParams(q.slice(1)))), { filter, size: 20 });
  assert.equal(pageQuery(NO_FILTER, 50), "");
  assert.deepEqual(filterFromQuery({}), { filter: NO_FILTER, size: 50 });
  assert.deepEqual(filterFromQuery({ size: "7", node: ["a", "b"] }), { filter: { ...NO_FILTER, node: "a" }, size: 50 });
  const typed = filterFromQuery({ since: "yesterday" });
  assert.equal(eventsQuery(typed.filter, null, typed.size).field, "since");
});
