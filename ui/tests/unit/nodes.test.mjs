// The Nodes page's paging (lib/nodes.ts): what it asks the controller for,
// and what it says about the page it got.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { selectionQuery, pageText, clampOffset, PAGE_SIZE } = require(`${process.env.UI_UNIT_LIB}/nodes.js`);

test("the query names only the filters set, and always the page", () => {
  assert.equal(selectionQuery({ q: "", state: "", role: "", offset: 0, limit: PAGE_SIZE }), "offset=0&limit=50");
  assert.equal(selectionQuery({ q: "  dc1 ", state: "ONLINE", role: "connector", offset: 100, limit: 50 }),
    "q=dc1&state=ONLINE&role=connector&offset=100&limit=50");
});

test("a search is sent encoded, never spliced into the path", () => {
  const q = selectionQuery({ q: "a&limit=100000/../x y", state: "", role: "", offset: 0, limit: 50 });
  assert.equal(new URLSearchParams(q).get("q"), "a&limit=100000/../x y");
  assert.equal(new URLSearchParams(q).getAll("limit").length, 1);
  assert.equal(new URLSearchParams(q).get("limit"), "50");
});

test("odd numbers become a valid page", () => {
  assert.equal(selectionQuery({ q: "", state: "", role: "", offset: -5, limit: 0 }), "offset=0&limit=1");
  assert.equal(selectionQuery({ q: "", state: "", role: "", offset: 10.7, limit: 50.2 }), "offset=10&limit=50");
});

test("the page says which rows of how many", () => {
  assert.equal(pageText(0, 50, 10000), "1–50 of 10000");
  assert.equal(pageText(9950, 50, 10000), "9951–10000 of 10000");
  assert.equal(pageText(0, 0, 0), "0 of 0");
});

test("a page past the end moves back to the last one with rows", () => {
  assert.equal(clampOffset(100, 120, 50), 100);
  assert.equal(clampOffset(150, 120, 50), 100);
  assert.equal(clampOffset(100, 100, 50), 50);
  assert.equal(clampOffset(50, 0, 50), 0);
});
