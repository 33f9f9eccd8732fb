// Compiles lib/ for Node (tsconfig.unit.json) and runs tests/unit/*.test.mjs
// with node's test runner; prints `ui-unit: N passed, M failed`.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ui = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(ui, "../build/ui-unit");
const tsc = spawnSync(process.execPath, [join(ui, "node_modules/typescript/bin/tsc"), "-p", join(ui, "tsconfig.unit.json")], {
  stdio: "inherit",
});
if (tsc.status !== 0) {
  console.log("ui-unit: 0 passed, 1 failed");
  process.exit(1);
}
const files = readdirSync(join(ui, "tests/unit"))
  .filter((f) => f.endsWith(".test.mjs"))
  .map((f) => join(ui, "tests/unit", f));
const run = spawnSync(process.execPath, ["--test", "--test-reporter=spec", "--test-timeout=20000", ...files], {
  env: { ...process.env, UI_UNIT_LIB: join(out, "lib") },
  encoding: "utf8",
});
process.stdout.write(run.stdout);
process.stderr.write(run.stderr);
const count = (name) => Number((new RegExp(`^ℹ ${name} (\\d+)`, "m").exec(run.stdout) ?? [])[1] ?? 0);
const passed = count("pass");
const failed = count("fail") + (run.status !== 0 && count("fail") === 0 ? 1 : 0);
console.log(`ui-unit: ${passed} passed, ${failed} failed`);
process.exit(run.status === 0 ? 0 : 1);
