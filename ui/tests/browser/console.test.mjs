// The console in Debian's Chromium (playwright-core, no browser download),
// against the real controller, connector and tunneler that
// tests/ui/console.sh started: log in, a node ONLINE, access and its
// Explain panel (an allowed and a denied pair), the tunneler killed
// and OFFLINE shown without a reload, the events, a node's detail, a revocation,
// a CA rotation, the admin token nowhere in what the
// browser got, the CSRF and session checks. Screenshots go to $UI_SHOTS.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { lowContrast } from "./contrast.mjs";

const URL_ = process.env.UI_URL;
const PASSWORD = process.env.UI_PASSWORD;
const ADMIN_TOKEN = process.env.ADMIN_AUTH_TOKEN;
const SHOTS = process.env.UI_SHOTS;
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS ?? "1000");
const LAPTOP_PID = Number(process.env.LAPTOP_PID);
const FWD = Number(process.env.FWD); // the tunneler's port forward to resource web
const ADMIN_URL = process.env.ADMIN_URL; // the controller's admin API, for changes made outside the console
const TOKEN_FILE = process.env.TOKEN_FILE; // where the created token goes, for the agent that enrolls with it
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

// One HTTP request through the tunneler's forward: true when web answered.
function throughTunneler() {
  return new Promise((resolve) => {
    const req = get({ host: "127.0.0.1", port: FWD, path: "/", timeout: 3000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve(res.statusCode === 200 && body.length > 0));
      res.on("error", () => resolve(false));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
  });
}

async function eventually(want, what) {
  for (let i = 0; i < 20; i++) {
    if ((await throughTunneler()) === want) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(what);
}

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
  // The fleet summary: counts over every node, and the controller's own health.
  await page.getByTestId("count-ONLINE").getByText("ONLINE 2").waitFor({ timeout: 10_000 });
  await page.getByTestId("controller-health").getByText("OK").waitFor({ timeout: 10_000 });
  assert.match(await page.getByTestId("controller-health").textContent(), /control sessions · bundle version \d+ · trust domain example\.org/);
  assert.match(await page.getByTestId("renewal-missed").textContent(), /^renewal missed 0$/);
  assert.equal(await page.getByTestId("page-text").textContent(), "1–2 of 2");
  await shot("nodes");
});

test("access: deny laptop → web in one click, the request fails; allow, it works", async () => {
  assert.equal(await throughTunneler(), true, "allowed at the start");
  await page.getByRole("link", { name: "Access" }).click();
  const cell = page.locator('[data-grant="laptop|web"]');
  await cell.waitFor();
  assert.equal(await cell.getAttribute("aria-pressed"), "true");
  assert.equal(await page.locator('tr[data-resource="web"] td').nth(2).textContent(), "dc1");
  await cell.click();
  await page.locator('[data-grant="laptop|web"][aria-pressed="false"]').waitFor();
  assert.match(await page.getByTestId("access-status").textContent(), /^Denied laptop → web \(allowlist version \d+/);
  await eventually(false, "the request through the tunneler still works after deny");
  await shot("access-denied");
  await cell.click();
  await page.locator('[data-grant="laptop|web"][aria-pressed="true"]').waitFor();
  await eventually(true, "the request through the tunneler fails after allow");
  await shot("access");
  const events = await page.evaluate(async () => (await fetch("/api/admin/events?limit=1000")).json());
  const admin = events.events.filter((e) => e.kind === "admin").map((e) => e.detail);
  assert.ok(admin.some((d) => d.startsWith("denied tunneler=laptop resource=web")), "the deny is an admin event");
  assert.ok(admin.some((d) => d.startsWith("allowed tunneler=laptop resource=web")), "the allow is an admin event");
});

test("explain: laptop → web is allowed step by step, and asked, dc1 agrees; laptop → db is denied with its first failure", async () => {
  await page.getByRole("link", { name: "Access" }).click();
  await page.getByRole("heading", { name: "Explain" }).waitFor();
  const form = page.getByRole("form", { name: "Explain access" });
  await form.getByLabel("Tunneler").fill("laptop");
  await form.getByLabel("Resource").fill("web");
  await form.getByLabel("Ask connector (optional)").fill("dc1");
  const result = page.getByTestId("explain-result");
  // The grant was just denied and allowed again: dc1 reports the version it
  // applied with its next heartbeat, until then explain says it is behind.
  let verdict = "";
  for (let i = 0; i < 20 && verdict !== "allow"; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 500));
    await form.getByRole("button", { name: "Explain" }).click();
    await result.waitFor({ timeout: 10_000 });
    await page.locator('[data-testid="explain-result"] li').first().waitFor();
    await form.getByRole("button", { name: "Explain" }).waitFor();
    verdict = await result.getAttribute("data-verdict");
  }
  assert.equal(verdict, "allow", await result.textContent());
  assert.match(await page.getByTestId("explain-verdict").textContent(), /^ALLOW laptop → web$/);
  for (const step of ["tunneler", "certificate", "revoked", "resource", "bindings", "grant", "connectors_online",
    "allowlist_applied", "draining", "connector_answer"])
    assert.equal(await result.locator(`li[data-step="${step}"]`).getAttribute("data-ok"), "true", step);
  assert.match(await result.locator('li[data-step="connector_answer"]').textContent(), /dc1 would allow: allowlist version \d+/);
  assert.match(await result.locator('li[data-step="draining"]').textContent(), /0 of 1 serving connectors draining/);
  await shot("explain-allow");

  await form.getByLabel("Resource").fill("db");
  await form.getByLabel("Ask connector (optional)").fill("");
  await form.getByRole("button", { name: "Explain" }).click();
  await page.locator('[data-testid="explain-result"][data-verdict="deny"]').waitFor({ timeout: 10_000 });
  assert.equal(await page.getByTestId("explain-verdict").textContent(),
    "DENY laptop → db: unknown resource: no resource named db");
  assert.equal(await result.locator('li[data-step="resource"]').getAttribute("data-ok"), "false");
  assert.equal(await result.locator('li[data-step="grant"]').getAttribute("data-ok"), "false");
  await shot("explain-deny");
});

test("events: newest first, the allow just made on top of the admin events; by node; paged", async () => {
  await page.getByRole("link", { name: "Events" }).click();
  await page.getByRole("heading", { name: "Events" }).waitFor();
  const rows = page.locator("tr[data-event-id]");
  await rows.first().waitFor();
  await page.getByLabel("Kind").selectOption("admin");
  await page.locator('tr[data-event-kind="admin"] >> nth=0').waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll("tr[data-event-id]")].every((r) => r.getAttribute("data-event-kind") === "admin"));
  assert.match(await rows.nth(0).getByTestId("detail").textContent(), /^allowed tunneler=laptop resource=web/);
  assert.match(await rows.nth(1).getByTestId("detail").textContent(), /^denied tunneler=laptop resource=web/);
  await shot("events");
  await page.getByLabel("Kind").selectOption("");
  await page.getByLabel("Node").selectOption({ label: "connector dc1" });
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll("tr[data-event-id] td:nth-child(3)")];
    return r.length > 0 && r.every((c) => c.textContent === "connector dc1");
  });
  await page.getByLabel("Node").selectOption("");
  await page.getByLabel("From (UTC)").fill("2099-01-01T00:00");
  await page.getByText("No event matches.").waitFor();
  await page.getByLabel("From (UTC)").fill("");
  await page.getByLabel("Per page").selectOption("5");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-event-id]").length === 5);
  const ids = async () => (await rows.evaluateAll((rs) => rs.map((r) => Number(r.getAttribute("data-event-id")))));
  const first = await ids();
  assert.deepEqual(first, [...first].sort((a, b) => b - a), "newest first");
  await page.getByRole("button", { name: "Older →" }).click();
  await page.getByTestId("page-info").getByText(/^page 2/).waitFor();
  await page.waitForFunction((top) => Number(document.querySelector("tr[data-event-id]")?.getAttribute("data-event-id")) < top, first[4]);
  await page.getByRole("button", { name: "← Newer" }).click();
  await page.waitForFunction((top) => Number(document.querySelector("tr[data-event-id]")?.getAttribute("data-event-id")) === top, first[0]);
});

test("tokens: create one, shown once with its env line; listed without it; delete", async () => {
  await page.getByRole("link", { name: "Tokens" }).click();
  await page.getByRole("heading", { name: "Enrollment tokens" }).waitFor();
  await page.getByLabel("Role").selectOption("tunneler");
  await page.getByLabel("Name").fill("phone");
  await page.getByLabel("TTL").fill("10m");
  await page.getByRole("button", { name: "Create token" }).click();
  const line = (await page.getByTestId("env-line").textContent()) ?? "";
  assert.match(line, /^ENROLLMENT_TOKEN=[0-9a-f]{16}\.[0-9a-f]{64}$/);
  const token = line.slice("ENROLLMENT_TOKEN=".length);
  writeFileSync(TOKEN_FILE, token, { mode: 0o600 });
  await page.locator('tr[data-token-name="phone"]').waitFor();
  await shot("tokens-created");
  await page.getByRole("button", { name: "Done" }).click();
  assert.ok(!(await page.content()).includes(token.split(".")[1]), "the secret is gone from the page");
  const listed = await page.evaluate(async () => JSON.stringify(await (await fetch("/api/admin/tokens")).json()));
  assert.ok(!listed.includes(token.split(".")[1]), "the list never carries the secret");
  // A second token, deleted (with the confirmation).
  await page.getByLabel("Name").fill("spare");
  await page.getByRole("button", { name: "Create token" }).click();
  await page.locator('tr[data-token-name="spare"]').waitFor();
  page.once("dialog", (d) => void d.accept());
  await page.getByRole("button", { name: "Delete token spare" }).click();
  await page.locator('tr[data-token-name="spare"]').waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Done" }).click();
  await shot("tokens");
  await page.getByRole("link", { name: "Nodes" }).click();
  await row("laptop").waitFor();
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
  // The rows were there before the filter: wait for the one it hides to
  // go, not for the one it keeps (which never left).
  await page.getByLabel("Status").selectOption("OFFLINE");
  await row("laptop").waitFor();
  await row("dc1").waitFor({ state: "detached", timeout: 5000 });
  assert.equal(await row("dc1").count(), 0);
  await page.getByLabel("Status").selectOption("");
  await page.getByLabel("Search").fill("dc1");
  await row("dc1").waitFor();
  await row("laptop").waitFor({ state: "detached", timeout: 5000 });
  assert.equal(await row("laptop").count(), 0);
  await page.getByLabel("Search").fill("");
});

test("node detail: identity and the runbook counters with their 5-minute deltas", async () => {
  await row("dc1").getByRole("link", { name: "dc1" }).click();
  await page.getByRole("heading", { name: "connector dc1" }).waitFor();
  assert.match((await page.getByTestId("serial").textContent()) ?? "", /^[0-9a-f]+$/);
  assert.match((await page.getByTestId("not-after").textContent()) ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in /);
  assert.match((await page.getByTestId("renew-at").textContent()) ?? "", /^\d{4}-\d\d-\d\dT/);
  await page.getByTestId("bundle-held").getByText(/^version \d+$/).waitFor({ timeout: 5000 });
  assert.match((await page.getByTestId("identity").textContent()) ?? "", /spiffe:\/\/[^ ]+\/connector\//);
  const counter = page.locator('[data-counter="telemetry.auth.unavailable"]');
  await counter.waitFor({ timeout: 5000 });
  assert.match((await counter.getByTestId("value").textContent()) ?? "", /^\d+$/);
  assert.match((await counter.getByTestId("delta").textContent()) ?? "", /^\+\d+( failing)?$/);
  await page.getByTestId("timeline").locator("li").first().waitFor();
  await shot("node-detail");
});

test("a drained connector: ONLINE with DRAINING here and in the list; undrained, plain ONLINE", async () => {
  const admin = (verb, body) =>
    fetch(`${ADMIN_URL}/api/admin/nodes/dc1/${verb}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  assert.equal((await admin("drain", { deadline: "10m" })).status, 200);
  const drain = page.getByTestId("drain");
  await drain.waitFor({ timeout: 5000 });
  assert.match((await drain.textContent()) ?? "", /DRAINING \(by the operator, open streams closed in (9|10) min\)/);
  await page.locator('[data-testid="identity"] [data-status="ONLINE"]').waitFor();
  await page.getByRole("link", { name: "← Nodes" }).click();
  await row("dc1").locator('[data-drain="operator"]').waitFor({ timeout: 5000 });
  await row("dc1").locator('[data-status="ONLINE"]').waitFor();
  await shot("nodes-draining");
  assert.equal((await admin("undrain", {})).status, 200);
  await row("dc1").locator("[data-drain]").waitFor({ state: "detached", timeout: 5000 });
  await row("dc1").getByRole("link", { name: "dc1" }).click();
  await page.getByRole("heading", { name: "connector dc1" }).waitFor();
});

test("revoke laptop: a confirmation first, then REVOKED here, in its timeline and in the list", async () => {
  await page.getByRole("link", { name: "← Nodes" }).click();
  await row("laptop").getByRole("link", { name: "laptop" }).click();
  await page.getByRole("heading", { name: "tunneler laptop" }).waitFor();
  await page.getByRole("button", { name: "Revoke…" }).click();
  const confirm = page.getByRole("button", { name: "Revoke laptop" });
  assert.equal(await confirm.isDisabled(), true, "disabled until the name is typed");
  await page.getByLabel("Reason").fill("lost laptop");
  await page.getByLabel("Node name").fill("laptop");
  await shot("node-revoke-confirm");
  await confirm.click();
  await page.locator('[data-testid="identity"] [data-status="REVOKED"]').waitFor({ timeout: 5000 });
  await page.getByTestId("timeline").getByText(/node revoked id=[0-9a-f]+ role=tunneler name=laptop reason=lost laptop/).waitFor();
  await shot("node-revoked");
  await page.getByRole("link", { name: "← Nodes" }).click();
  await row("laptop").locator('[data-status="REVOKED"]').waitFor();
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

test("CA: bundle and fingerprints; rotate only after typing the word; a second CA signs", async () => {
  await page.goto(URL_ + "/ca");
  await page.getByRole("heading", { name: "Certificate authority" }).waitFor();
  await page.locator("tr[data-ca]").first().waitFor();
  assert.equal(await page.locator("tr[data-ca]").count(), 1);
  assert.match(await page.getByTestId("fingerprint").first().textContent(), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.match(await page.getByTestId("bundle").textContent(), /^-----BEGIN CERTIFICATE-----/);
  const version = Number(/version (\d+)/.exec(await page.getByTestId("bundle-version").textContent())[1]);
  const button = page.getByRole("button", { name: "Rotate the CA" });
  await page.getByLabel("Confirmation").fill("rotat");
  assert.equal(await button.isDisabled(), true, "disabled until the word is typed");
  await page.getByLabel("Confirmation").fill("rotate");
  await button.click();
  await page.getByTestId("rotate-status").getByText(`bundle version ${version + 1}`).waitFor();
  await page.locator("tr[data-ca]").nth(1).waitFor();
  assert.match(await page.locator('tr[data-ca="2"]').textContent(), /signer/);
  assert.match(await page.locator('tr[data-ca="1"]').textContent(), /trusted/);
  // The rollout: every online node's heartbeat reports the new bundle.
  await page.getByTestId("rollout-text").getByText(/^(\d+) of \1 online nodes hold it — done$/).waitFor({ timeout: 10_000 });
  assert.match(await page.getByTestId("rollout").locator("h2").textContent(), new RegExp(`version ${version + 1}$`));
  await shot("ca");
});

test("Controllers: the one serving this console, answering, with the nodes it holds", async () => {
  await page.goto(URL_ + "/controllers");
  await page.getByRole("heading", { name: "Controllers" }).waitFor();
  const row = page.locator('tr[data-controller][data-alive="true"]').first();
  await row.waitFor();
  assert.match(await row.textContent(), /\(this one\)/);
  assert.match(await row.getAttribute("data-controller"), /^127\.0\.0\.1:\d+$/);
  assert.match(await page.getByTestId("controllers-summary").textContent(), /^1 of 1 controller answering/);
  await shot("controllers");
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

// ---- Keyboard: Tab and Enter only, a visible focus ring on every stop ----

// What has the focus, and whether its focus ring shows.
const focused = () =>
  page.evaluate(() => {
    const e = document.activeElement ?? document.body;
    const st = getComputedStyle(e);
    const label = e.labels?.[0]?.textContent?.trim() ?? e.getAttribute("aria-label") ?? "";
    // The last stop of a date field is its calendar button, inside the
    // browser's own shadow DOM: the field then is not :focus, and Chromium
    // rings the button itself, out of reach of the page's CSS.
    const picker = e instanceof HTMLInputElement && e.type === "datetime-local" && !e.matches(":focus");
    return { tag: e.tagName, label, text: (e.textContent ?? "").trim(), outline: st.outlineStyle, width: parseFloat(st.outlineWidth), picker };
  });

// Presses Tab until `want` holds for the focused element (the one focused
// already counts), checking the ring of each stop on the way.
async function tabTo(want, what) {
  for (let i = 0; i < 60; i++) {
    const f = await focused();
    if (f.tag !== "BODY" && !f.picker) assert.ok(f.outline !== "none" && f.width >= 2, `a visible focus ring on ${f.tag} "${f.label || f.text}"`);
    if (want(f)) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`${what}: not reached with Tab`);
}

test("keyboard: log in, the Nodes filter, a node's page and its events, with Tab and Enter only", async () => {
  await page.goto(URL_ + "/login");
  await tabTo((f) => f.tag === "INPUT" && f.label === "Console password", "the password field");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Nodes" }).waitFor();
  await row("dc1").waitFor();
  await tabTo((f) => f.tag === "INPUT" && f.label === "Search", "the Nodes search");
  await page.keyboard.type("dc1");
  await row("laptop").waitFor({ state: "detached", timeout: 5000 });
  await tabTo((f) => f.tag === "SELECT" && f.label.startsWith("Status"), "the Status filter");
  await tabTo((f) => f.tag === "SELECT" && f.label.startsWith("Role"), "the Role filter");
  await tabTo((f) => f.tag === "A" && f.text === "dc1", "dc1's link");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "connector dc1" }).waitFor();
  await page.getByTestId("timeline").locator("li").first().waitFor();
  await tabTo((f) => f.tag === "A" && / on the Events page$/.test(f.text), "the link to the node's events");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Events" }).waitFor();
  assert.equal(new URL(page.url()).searchParams.get("node"), await page.getByLabel("Node").inputValue());
  await page.waitForFunction(() => {
    const r = [...document.querySelectorAll("tr[data-event-id] td:nth-child(3)")];
    return r.length > 0 && r.every((c) => c.textContent === "connector dc1");
  });
  await tabTo((f) => f.tag === "BUTTON" && f.text === "Newest", "the Newest button");
  await page.keyboard.press("Enter");
  await page.locator("tr[data-event-id]").first().waitFor();
});

// ---- Events: filtered by the controller, one call a page ----

test("events by node and kind: only matching rows, one call a page, paged older; the URL keeps the filter; a bad range is not sent", async () => {
  const nodes = await page.evaluate(async () => (await (await fetch("/api/admin/nodes")).json()).nodes);
  const laptop = nodes.find((n) => n.name === "laptop");
  // Seven admin events of laptop (its addresses set), beside its
  // enrolled, status and revoked events: more than a page of 5.
  for (let i = 0; i < 7; i++) {
    const status = await page.evaluate(async (id) => {
      const csrf = document.querySelector('meta[name="ztr-csrf"]').getAttribute("content");
      const r = await fetch(`/api/admin/nodes/${id}/addresses`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ addresses: ["127.0.0.1"] }),
      });
      return r.status;
    }, laptop.id);
    assert.equal(status, 200);
  }
  const all = await page.evaluate(async (id) => (await (await fetch(`/api/admin/events?node=${id}&order=desc&limit=1000`)).json()).events, laptop.id);
  const want = all.filter((e) => e.kind === "admin").map((e) => e.id);
  assert.ok(want.length >= 8, `${want.length} admin events of laptop`);
  assert.ok(all.some((e) => e.kind !== "admin"), "laptop has events of other kinds too");

  const calls = [];
  const onRequest = (r) => {
    const u = new URL(r.url());
    if (u.pathname === "/api/admin/events") calls.push(Object.fromEntries(u.searchParams));
  };
  page.on("request", onRequest);
  try {
    await page.goto(URL_ + "/events");
    const rows = page.locator("tr[data-event-id]");
    await rows.first().waitFor();
    await page.getByLabel("Node").selectOption(laptop.id);
    await page.getByLabel("Kind").selectOption("admin");
    await page.getByLabel("Per page").selectOption("5");
    const shows = (ids) => page.waitForFunction((w) => JSON.stringify([...document.querySelectorAll("tr[data-event-id]")].map((r) => Number(r.getAttribute("data-event-id")))) === w, JSON.stringify(ids));
    await shows(want.slice(0, 5));
    const last = calls.at(-1);
    assert.deepEqual({ node: last.node, kind: last.kind, order: last.order, limit: last.limit, before: last.before }, { node: laptop.id, kind: "admin", order: "desc", limit: "6", before: undefined });
    const url = new URL(page.url());
    assert.deepEqual([url.searchParams.get("node"), url.searchParams.get("kind"), url.searchParams.get("size")], [laptop.id, "admin", "5"]);
    const cells = await rows.evaluateAll((rs) => rs.map((r) => [r.getAttribute("data-event-kind"), r.querySelector("td:nth-child(3)").textContent]));
    assert.ok(cells.every(([k, n]) => k === "admin" && n === "tunneler laptop"), JSON.stringify(cells));
    await shot("events-filtered");

    // Older, one call each, until none is left.
    const older = page.getByRole("button", { name: "Older →" });
    for (let p = 1; p * 5 < want.length; p++) {
      const before = calls.length;
      await older.click();
      await shows(want.slice(p * 5, p * 5 + 5));
      assert.equal(calls.length - before, 1, "one call a page");
      assert.equal(calls.at(-1).before, String(want[p * 5 - 1]), "the cursor is the last row shown");
    }
    assert.equal(await older.isDisabled(), true, "nothing older");
    await page.getByTestId("page-info").getByText(/none older$/).waitFor();

    // The URL carries the filter: a reload shows the same first page.
    await page.reload();
    await shows(want.slice(0, 5));
    assert.equal(await page.getByLabel("Kind").inputValue(), "admin");

    // To before From: said, marked, and not sent.
    await page.getByLabel("From (UTC)").fill("2099-01-02T00:00");
    await page.getByText("No event matches.").waitFor();
    const sent = calls.length;
    await page.getByLabel("To (UTC)").fill("2099-01-01T00:00");
    const problem = page.getByTestId("filter-invalid");
    await problem.waitFor();
    assert.match(await problem.textContent(), /^To \(2099-01-01T00:00(:00)?\) is before From \(2099-01-02T00:00(:00)?\): no event can match\. Nothing was asked of the controller\.$/);
    assert.equal(await page.getByLabel("To (UTC)").getAttribute("aria-invalid"), "true");
    await page.waitForTimeout(300);
    assert.equal(calls.length, sent, "the bad range was not sent");
    await page.getByRole("button", { name: "Clear filters" }).click();
    await problem.waitFor({ state: "detached" });
    await rows.first().waitFor();
    assert.equal(new URL(page.url()).search, "?size=5");
  } finally {
    page.off("request", onRequest);
  }
});

// ---- Dark mode: every text readable (4.5:1) on every page, light and dark ----

test("light and dark: every text on every page at least 4.5:1; dark screenshots", async () => {
  const dc1 = (await page.evaluate(async () => (await (await fetch("/api/admin/nodes")).json()).nodes)).find((n) => n.name === "dc1");
  for (const colorScheme of ["light", "dark"]) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, colorScheme });
    try {
      const p = await ctx.newPage();
      await p.goto(URL_ + "/login");
      await p.getByLabel("Console password").fill(PASSWORD);
      await p.getByRole("button", { name: "Log in" }).click();
      await p.getByRole("heading", { name: "Nodes" }).waitFor();
      const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
      assert.equal(bg, colorScheme === "dark" ? "rgb(15, 20, 25)" : "rgb(255, 255, 255)");
      const pages = [
        ["nodes", "/", () => p.locator('tr[data-node-name="dc1"] [data-status]').waitFor()],
        ["node-detail", `/nodes/${dc1.id}`, () => p.getByTestId("timeline").locator("li").first().waitFor()],
        ["events", "/events?kind=admin", () => p.locator('tr[data-event-kind="admin"]').first().waitFor()],
        ["access", "/access", () => p.locator("[data-grant]").first().waitFor()],
        ["tokens", "/tokens", () => p.getByRole("heading", { name: "Enrollment tokens" }).waitFor()],
        ["ca", "/ca", () => p.locator("tr[data-ca]").first().waitFor()],
        ["controllers", "/controllers", () => p.locator("tr[data-controller]").first().waitFor()],
      ];
      for (const [name, path, ready] of pages) {
        await p.goto(URL_ + path);
        await ready();
        if (name === "node-detail") await p.locator('[data-counter="telemetry.auth.unavailable"]').waitFor({ timeout: 5000 });
        assert.deepEqual(await lowContrast(p), [], `${colorScheme} ${path}: text below 4.5:1`);
        if (colorScheme === "dark" && ["nodes", "node-detail", "events"].includes(name))
          await p.screenshot({ path: `${SHOTS}/${name}-dark.png`, fullPage: true });
      }
    } finally {
      await ctx.close();
    }
  }
});
