// How the Nodes page says the controller's escalations (lib/fleet.ts).
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const { escalationText, byId } = require(`${process.env.UI_UNIT_LIB}/fleet.js`);

test("an escalation: the failure, the count, the names and how many more", () => {
  const three = { failure: "telemetry.auth.unavailable", nodes: 3, names: ["tunneler/a", "tunneler/b", "tunneler/c"], logged_at: 1 };
  assert.equal(escalationText(three, 300),
    "3 nodes show telemetry.auth.unavailable within 5 min: tunneler/a, tunneler/b, tunneler/c. Escalate to platform/backend on-call.");
  const many = { failure: "renewal_missed", nodes: 12, names: Array.from({ length: 10 }, (_, i) => `tunneler/t${i}`), logged_at: 1 };
  assert.match(escalationText(many, 300), /: tunneler\/t0, .*tunneler\/t9 and 2 more\. Escalate/);
  assert.equal(byId({ nodes: [{ id: "x", name: "n" }] }).get("x").name, "n");
  assert.equal(byId(null).size, 0);
});
