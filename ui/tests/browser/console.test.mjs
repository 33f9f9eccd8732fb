// The console in Debian's Chromium (playwright-core, no browser download),
// against the real controller, connector and tunneler that
// tests/ui/console.sh started: log in, a node ONLINE, the tunneler killed
// and OFFLINE shown without a reload, the admin token nowhere in what the
// browser got, the CSRF and session checks. Screenshots go to $UI_SHOTS.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const URL_ = process.env.UI_URL;
const PASSWORD = process.env.UI_PASSWORD;
const ADMIN_TOKEN = process.env.ADMIN_AUTH_TOKEN;
const SHOTS = process.env.UI_SHOTS;
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS ?? "1000");
const LAPTOP_PID = Number(process.env.LAPTOP_PID);
assert.ok(URL_ && PASSWORD && ADMIN_TOKEN && SHOTS && LAPTOP_PID, "UI_URL, UI_PASSWORD, ADMIN_AUTH_TOKEN, UI_SHOTS, LAPTOP_PID");
mkdirSync(SHOTS, { recursive: true });

let browser;
let context;
let page;
const seen = []; // every response the browser got: url, headers, body

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // As root there is no user namespace sandbox; the machine reaches no
    // outside host, so Chromium's own background traffic is switched off.
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  page = await context.newPage();
  page.on("response", async (res) => {
    try {
      let body = "";
      try {
        body = (await res.body()).toString("latin1");
      } catch {
        body = ""; // a redirect has none
      }
      seen.push({ url: res.url(), headers: JSON.stringify(await res.allHeaders()), body });
    } catch {
      // the page went away while this response was read: nothing to check
    }
  });
});

after(async () => {
  page?.removeAllListeners("response");
  await browser?.close();
});

const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const row = (name) => page.locator(`tr[data-node-name="${name}"]`);

test("the nodes page needs a login; a wrong password is refused", async () => {
  await page.goto(URL_ + "/");
  assert.equal(new URL(page.url()).pathname, "/login");
  await shot("login");
  await page.getByLabel("Console password").fill("not-the-password");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("login-error").waitFor();
  assert.equal(await page.getByTestId("login-error").textContent(), "wrong password");
});

test("log in; connector and tunneler are ONLINE", async () => {
  await page.getByLabel("Console password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Nodes" }).waitFor();
  for (const name of ["dc1", "laptop"]) {
    await row(name).locator('[data-status="ONLINE"]').waitFor({ timeout: 10_000 });
  }
  assert.equal(await row("dc1").locator("td").nth(1).textContent(), "connector");
  assert.equal(await row("laptop").locator("td").nth(1).textContent(), "tunneler");
  await shot("nodes");
});

test("the tunneler is killed: OFFLINE within three heartbeat intervals, no reload", async () => {
  await page.evaluate(() => {
    window.__sameDocument = true; // gone if the page reloads
  });
  const killed = Date.now();
  process.kill(LAPTOP_PID, "SIGKILL");
  await row("laptop").locator('[data-status="OFFLINE"]').waitFor({ timeout: 3 * HEARTBEAT_MS });
  const took = Date.now() - killed;
  assert.ok(took <= 3 * HEARTBEAT_MS, `OFFLINE after ${took} ms`);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
  await row("dc1").locator('[data-status="ONLINE"]').waitFor();
  console.log(`# OFFLINE shown ${took} ms after the kill (heartbeat ${HEARTBEAT_MS} ms)`);
  await shot("nodes-offline");
});

test("filter and search", async () => {
  await page.getByLabel("Status").selectOption("OFFLINE");
  await row("laptop").waitFor();
  assert.equal(await row("dc1").count(), 0);
  await page.getByLabel("Status").selectOption("");
  await page.getByLabel("Search").fill("dc1");
  await row("dc1").waitFor();
  assert.equal(await row("laptop").count(), 0);
  await page.getByLabel("Search").fill("");
});

test("a change without the CSRF token is refused; with it, it goes through", async () => {
  const without = await page.request.post(URL_ + "/api/admin/tokens", {
    data: { role: "tunneler", name: "csrf-probe" },
    headers: { origin: URL_ },
  });
  assert.equal(without.status(), 403);
  const foreign = await page.evaluate(async () => {
    const csrf = document.querySelector('meta[name="ztr-csrf"]').getAttribute("content");
    const r = await fetch("/api/admin/tokens", {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify({ role: "tunneler", name: "csrf-ok", ttl: "5m" }),
    });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(foreign.status, 201);
  assert.match(foreign.body.token, /^[0-9a-f]{16}\./);
});

test("an admin path with no route: 404 Not Found, said clearly", async () => {
  const r = await page.request.get(URL_ + "/api/admin/nope");
  assert.equal(r.status(), 404);
  assert.deepEqual(await r.json(), { error: "not found: the console has no route GET /api/admin/nope" });
  await page.goto(URL_ + "/no-such-page");
  await page.getByRole("heading", { name: "404 Not Found" }).waitFor();
  await shot("not-found");
});

test("the admin token is in no page, bundle, header or cookie the browser got", async () => {
  await page.goto(URL_ + "/");
  await row("dc1").waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "ztr_ui_session");
  assert.ok(session, "a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.ok(!JSON.stringify(cookies).includes(ADMIN_TOKEN), "not in a cookie");
  assert.ok(seen.some((r) => r.url.includes("/_next/static/") && r.url.endsWith(".js")), "bundles were fetched");
  assert.ok(seen.some((r) => r.url.endsWith("/api/admin/nodes")), "the node list was fetched");
  for (const r of seen) {
    assert.ok(!r.body.includes(ADMIN_TOKEN), `not in the body of ${r.url}`);
    assert.ok(!r.headers.includes(ADMIN_TOKEN), `not in the headers of ${r.url}`);
  }
  const html = await page.content();
  assert.ok(!html.includes(ADMIN_TOKEN), "not in the live page");
  const storage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert.ok(!storage.includes(ADMIN_TOKEN), "not in web storage");
  console.log(`# ${seen.length} responses checked`);
});

test("log out: the session ends, the API answers 401", async () => {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/login$/);
  const r = await page.request.get(URL_ + "/api/admin/nodes");
  assert.equal(r.status(), 401);
  await page.goto(URL_ + "/");
  assert.equal(new URL(page.url()).pathname, "/login");
});
