// Reading the events newest first over the admin API's oldest-first,
// after-cursor listing (lib/events.ts), against an in-memory table.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { newestId, eventPage } = require(`${process.env.UI_UNIT_LIB}/events.js`);

// A table with ids first..last (the older ones pruned), kinds and nodes
// alternating; get() behaves as GET /api/admin/events and counts calls.
function table(first, last) {
  const rows = [];
  for (let id = first; id <= last; id++)
    rows.push({ id, at: id, kind: id % 3 === 0 ? "admin" : "status", node_id: id % 2 === 0 ? "aa" : "bb", detail: `e${id}` });
  const t = { calls: 0 };
  t.get = async (after, limit) => {
    t.calls++;
    assert.ok(limit >= 1 && limit <= 1000);
    return { ok: true, data: rows.filter((e) => e.id > after).slice(0, limit) };
  };
  return t;
}

test("the newest id: none, small, large, after pruning", async () => {
  assert.deepEqual(await newestId(table(1, 0).get), { ok: true, data: 0 });
  assert.deepEqual(await newestId(table(1, 1).get), { ok: true, data: 1 });
  assert.deepEqual(await newestId(table(1, 1024).get), { ok: true, data: 1024 });
  const big = table(90_001, 190_000);
  assert.deepEqual(await newestId(big.get), { ok: true, data: 190_000 });
  assert.ok(big.calls <= 60, `${big.calls} calls`);
});

test("pages: newest first, filtered, the cursor continues where the page stopped", async () => {
  const t = table(101, 2600);
  const first = await eventPage(t.get, { node_id: "", kind: "" }, 2601, 50);
  assert.equal(first.data.events.length, 50);
  assert.equal(first.data.events[0].id, 2600);
  assert.equal(first.data.events[49].id, 2551);
  assert.equal(first.data.before, 2551);
  const second = await eventPage(t.get, { node_id: "", kind: "" }, first.data.before, 50);
  assert.equal(second.data.events[0].id, 2550);

  const admin = await eventPage(t.get, { node_id: "aa", kind: "admin" }, 2601, 1000);
  assert.ok(admin.data.events.every((e) => e.kind === "admin" && e.node_id === "aa"));
  assert.equal(admin.data.events.length, Math.floor(2600 / 6) - Math.floor(100 / 6));
  assert.equal(admin.data.events[0].id, 2598);
  assert.equal(admin.data.before, null, "the pruned ids below 101 end the list");

  const last = await eventPage(t.get, { node_id: "", kind: "" }, 151, 50);
  assert.equal(last.data.events.length, 50);
  assert.equal(last.data.events.at(-1).id, 101);
  const none = await eventPage(t.get, { node_id: "", kind: "" }, last.data.before ?? 101, 50);
  assert.equal(none.data.events.length, 0);
  assert.equal(none.data.before, null);
});

test("a time range: until skips the newer, since ends the search", async () => {
  const t = table(1, 5000);
  const r = await eventPage(t.get, { node_id: "", kind: "", since: 4001, until: 4500 }, 5001, 1000);
  assert.equal(r.data.events.length, 500);
  assert.equal(r.data.events[0].at, 4500);
  assert.equal(r.data.events.at(-1).at, 4001);
  assert.equal(r.data.before, null);
  const calls = t.calls;
  await eventPage(t.get, { node_id: "", kind: "", since: 4900 }, 5001, 1000);
  assert.equal(t.calls - calls, 1, "one window read, not five");
});

test("a failing call is passed on", async () => {
  const get = async () => ({ ok: false, error: { status: 502, text: "down" } });
  assert.deepEqual(await newestId(get), { ok: false, error: { status: 502, text: "down" } });
  assert.deepEqual(await eventPage(get, { node_id: "", kind: "" }, 10, 5), { ok: false, error: { status: 502, text: "down" } });
});
