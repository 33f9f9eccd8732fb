// The Nodes page in front of NODES nodes (tests/ui/scale.sh enrolled them):
// the first page's render, a search and the next page, timed in the
// browser and written to OUT. Asserted: the counts and the rows, not the
// times (they are reported: bench/RESULTS.md).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const URL_ = process.env.UI_URL;
const PASSWORD = process.env.UI_PASSWORD;
const NODES = Number(process.env.NODES);
const ONLINE = Number(process.env.ONLINE);
const OUT = process.env.OUT;
const SHOTS = process.env.UI_SHOTS;
assert.ok(URL_ && PASSWORD && NODES > 0 && OUT && SHOTS, "UI_URL, UI_PASSWORD, NODES, OUT, UI_SHOTS");

let browser;
let page;
const measured = {};

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
  await page.goto(URL_ + "/login");
  await page.getByLabel("Console password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Nodes" }).waitFor();
});

after(async () => {
  writeFileSync(OUT, Object.entries(measured).map(([k, v]) => `${k}=${v}`).join("\n") + "\n");
  await browser?.close();
});

const rows = () => page.locator("tbody tr[data-node-name]");
const ms = (t0) => Math.round(performance.now() - t0);

test(`first render of the Nodes page with ${NODES} nodes`, async () => {
  // Three loads; the first warms the server's compiled page.
  const times = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await page.goto(URL_ + "/", { waitUntil: "commit" });
    await rows().first().waitFor();
    times.push(ms(t0));
    // What the browser itself says: navigation start to the first paint of content.
    const fcp = await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1);
    measured[`first_contentful_paint_ms_${i + 1}`] = Math.round(fcp);
  }
  times.forEach((t, i) => (measured[`first_render_ms_${i + 1}`] = t));
  console.log(`# measured first render (navigation → first row visible): ${times.join(", ")} ms`);
  assert.equal(await rows().count(), 50, "one page of 50 rows");
  await page.getByTestId("page-text").getByText(`1–50 of ${NODES}`).waitFor();
  await page.getByTestId(`count-ONLINE`).getByText(`ONLINE ${ONLINE}`).waitFor({ timeout: 10_000 });
  await page.getByTestId(`count-OFFLINE`).getByText(`OFFLINE ${NODES - ONLINE}`).waitFor();
  await page.getByTestId("controller-health").getByText("OK").waitFor({ timeout: 10_000 });
  const html = await page.evaluate(() => document.documentElement.outerHTML.length);
  measured.page_html_bytes = html;
  await page.screenshot({ path: `${SHOTS}/nodes-10000.png` });
});

let secondPageName = null;

test("the next page", async () => {
  const firstBefore = await rows().first().getAttribute("data-node-name");
  const t0 = performance.now();
  await page.getByRole("button", { name: "Next" }).click();
  await page.getByTestId("page-text").getByText(`51–100 of ${NODES}`).waitFor();
  await page.waitForFunction((before) => document.querySelector("tbody tr[data-node-name]")?.getAttribute("data-node-name") !== before, firstBefore);
  measured.next_page_ms = ms(t0);
  assert.equal(await rows().count(), 50);
  console.log(`# measured next page: ${measured.next_page_ms} ms`);
  secondPageName = await rows().nth(7).getAttribute("data-node-name");
});


test("a search answers from the controller", async () => {
  // A node from the second page, looked for from the first.
  const name = secondPageName;
  assert.ok(name);
  const t0 = performance.now();
  await page.getByLabel("Search").fill(name);
  // Names carry six digits: the full name matches that node alone.
  await page.getByTestId("page-text").getByText("1–1 of 1", { exact: true }).waitFor();
  measured.search_ms = ms(t0); // includes the 250 ms typing pause
  assert.equal(await rows().count(), 1);
  assert.equal(await rows().first().getAttribute("data-node-name"), name);
  console.log(`# measured search (typed → rows, with the 250 ms pause): ${measured.search_ms} ms`);
  await page.getByLabel("Search").fill("");
  await page.getByTestId("page-text").getByText(`1–50 of ${NODES}`).waitFor();
});
