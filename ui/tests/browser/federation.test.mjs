// The Federation page in Debian's Chromium (playwright-core) against the two
// real controllers tests/ui/federation.sh started, a.example (A, with a
// federation listener at $A_FED and resources pg and web) and b.example
// (B), each behind its own console ($A_UI, $B_UI): propose b on A's
// console, the token shown once; accept it on B's console; both active
// without a reload; a grant refused with the controller's text, grants
// made, listed and revoked; suspend (B sees degraded) and resume; a token
// replaced; a peer revoked with its name typed; the tokens in no storage
// or page once dismissed; light and dark contrast. Screenshots to $UI_SHOTS.
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { lowContrast } from "./contrast.mjs";

const A_UI = process.env.A_UI;
const B_UI = process.env.B_UI;
const A_FED = process.env.A_FED; // HOST:PORT of A's federation listener
const PASSWORD = process.env.UI_PASSWORD;
const ADMIN_TOKEN = process.env.ADMIN_AUTH_TOKEN;
const SHOTS = process.env.UI_SHOTS;
const TOKEN_FILE = process.env.TOKEN_FILE; // every token the pages showed, for the script's log checks
assert.ok(A_UI && B_UI && A_FED && PASSWORD && ADMIN_TOKEN && SHOTS && TOKEN_FILE, "A_UI, B_UI, A_FED, UI_PASSWORD, ADMIN_AUTH_TOKEN, UI_SHOTS, TOKEN_FILE");
mkdirSync(SHOTS, { recursive: true });

const LAPTOP = "spiffe://b.example/tunneler/laptop";
let browser;
let ctxA;
let ctxB;
let pa; // A's console
let pb; // B's console
const tokens = []; // every acceptance token a page showed

const secretOf = (token) => token.split(".")[2];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  // Two contexts: both consoles are on 127.0.0.1, and cookies ignore the port.
  ctxA = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  ctxB = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  await ctxA.grantPermissions(["clipboard-read", "clipboard-write"], { origin: A_UI });
  pa = await ctxA.newPage();
  pb = await ctxB.newPage();
});

after(async () => {
  await browser?.close();
});

async function login(p, url) {
  await p.goto(url + "/login");
  await p.getByLabel("Console password").fill(PASSWORD);
  await p.getByRole("button", { name: "Log in" }).click();
  await p.getByRole("heading", { name: "Nodes" }).waitFor();
}

const peerRow = (p, name) => p.locator(`tr[data-peer-name="${name}"]`);
const waitState = (p, name, state, timeout = 10_000) => p.locator(`tr[data-peer-name="${name}"][data-peer-state="${state}"]`).waitFor({ timeout });
const shot = (p, name) => p.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const label = (p, text) => p.getByLabel(text, { exact: true });
const button = (p, text) => p.getByRole("button", { name: text, exact: true });

function keep(token) {
  tokens.push(token);
  appendFileSync(TOKEN_FILE, token + "\n", { mode: 0o600 });
}

// Where a page could keep a secret: the live DOM, web storage, cookies, the URL.
async function assertGone(p, what) {
  const html = await p.content();
  const storage = await p.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  const cookies = JSON.stringify(await p.context().cookies());
  for (const t of tokens) {
    const s = secretOf(t);
    assert.ok(!html.includes(s), `${what}: a token is still in the page`);
    assert.ok(!storage.includes(s), `${what}: a token is in web storage`);
    assert.ok(!cookies.includes(s), `${what}: a token is in a cookie`);
    assert.ok(!p.url().includes(s), `${what}: a token is in the URL`);
  }
}

test("A: the Federation page in the navigation; no peer yet", async () => {
  await login(pa, A_UI);
  await pa.getByRole("link", { name: "Federation" }).click();
  await pa.getByRole("heading", { name: "Federation", exact: true }).waitFor();
  assert.equal(await pa.getByRole("link", { name: "Federation" }).getAttribute("aria-current"), "page");
  await pa.getByText("No peer yet").waitFor();
  await pa.getByTestId("no-grants").waitFor();
  await pa.getByTestId("updated").getByText(/^updated just now · every 1 s$/).waitFor();
});

test("A: propose b; the token shown once, with a Copy button; Done drops it", async () => {
  await label(pa, "Peer name").fill("b");
  await label(pa, "Token TTL").fill("1h");
  await button(pa, "Propose").click();
  const token = (await pa.getByTestId("token-text").textContent()) ?? "";
  assert.match(token, /^ztrfed1\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  keep(token);
  await waitState(pa, "b", "proposed");
  assert.match(await peerRow(pa, "b").textContent(), /pending, expires \d{4}-/);
  assert.match(await pa.getByTestId("federation-status").textContent(), /^Proposed peer b/);
  await button(pa, "Copy").click();
  await button(pa, "Copied").waitFor();
  assert.equal(await pa.evaluate(() => navigator.clipboard.readText()), token, "Copy puts the token on the clipboard");
  await shot(pa, "federation-proposed");
  await button(pa, "Done").click();
  await pa.getByTestId("token-text").waitFor({ state: "detached" });
  await assertGone(pa, "A after Done");
  const listed = await pa.evaluate(async () => JSON.stringify(await (await fetch("/api/admin/federation/peers")).json()));
  assert.ok(!listed.includes(secretOf(token)), "the peer list never carries the token");
});

test("B: accept the token in B's console; both sides go active without a reload", async () => {
  await pa.evaluate(() => {
    window.__sameDocument = true; // gone if the page reloads
  });
  await login(pb, B_UI);
  await pb.goto(B_UI + "/federation");
  await pb.getByText("No peer yet").waitFor();
  await label(pb, "Proposer's address").fill(A_FED);
  await label(pb, "Name it").fill("a");
  await label(pb, "Acceptance token").fill(tokens[0]);
  await button(pb, "Accept").click();
  await pb.getByTestId("federation-status").getByText(/^Accepted: peer a \(a\.example\) is accepted/).waitFor({ timeout: 15_000 });
  assert.equal(await label(pb, "Acceptance token").inputValue(), "", "the token is not kept in the form");
  await waitState(pb, "a", "active");
  const rowB = await peerRow(pb, "a").textContent();
  assert.match(rowB, /a\.example/);
  assert.match(rowB, new RegExp(`outbound ${A_FED.replace(/\./g, "\\.")}`));
  await waitState(pa, "b", "active");
  const rowA = peerRow(pa, "b");
  assert.match(await rowA.textContent(), /b\.example/);
  assert.match(await rowA.locator("td").nth(3).textContent(), /^inbound/);
  assert.match(await rowA.getByTestId("heartbeat").textContent(), /^\d+ s ago$/);
  assert.equal(await rowA.getByTestId("bundle-version").textContent(), "version 1");
  assert.doesNotMatch(await rowA.textContent(), /pending/, "the token is used up");
  assert.equal(await rowA.locator(".status").getAttribute("class"), "status status-online");
  assert.equal(await pa.evaluate(() => window.__sameDocument), true, "the page was not reloaded");
  await assertGone(pb, "B after the accept");
  await shot(pb, "federation-accepted");
});

test("A: a grant outside b's trust domain is refused with the controller's text; an empty field is said before sending", async () => {
  await label(pa, "Peer").selectOption("b");
  await label(pa, "Resource").selectOption("pg");
  await button(pa, "Grant").click();
  assert.match(await pa.getByTestId("grant-form-error").textContent(), /^Give the tunneler's SPIFFE ID/);
  await label(pa, "Tunneler SPIFFE ID").fill("spiffe://c.example/tunneler/laptop");
  await button(pa, "Grant").click();
  await pa.getByTestId("federation-refused").waitFor();
  assert.equal(await pa.getByTestId("refused-text").textContent(), "--tunneler spiffe://c.example/tunneler/laptop is not in peer b's trust domain b.example");
  assert.match(await pa.getByTestId("federation-refused").locator("strong").textContent(), /^400 Bad Request: POST \/api\/admin\/federation\/grants$/);
  await pa.getByTestId("no-grants").waitFor();
});

test("A: grant pg to b's laptop (CIDR, 2 h) and web to b's phone (until 2099); listed per peer; revoke laptop's", async () => {
  await label(pa, "Tunneler SPIFFE ID").fill(LAPTOP);
  await label(pa, "Source CIDRs").fill("127.0.0.0/8, 10.1.0.0/16");
  await label(pa, "Expires").selectOption("in");
  await label(pa, "Lasts").fill("2h");
  await button(pa, "Grant").click();
  const laptop = pa.locator(`tr[data-grant-tunneler="${LAPTOP}"]`);
  await laptop.waitFor();
  await pa.getByTestId("federation-refused").waitFor({ state: "detached" });
  const cells = await laptop.locator("td").allTextContents();
  assert.equal(cells[0], "pg");
  assert.equal(cells[1], LAPTOP);
  assert.equal(cells[2], "127.0.0.0/8, 10.1.0.0/16");
  assert.match(cells[3], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (1 h 59 min|2 h 0 min)\)$/);
  assert.equal(cells[4], "active");

  await label(pa, "Resource").selectOption("web");
  await label(pa, "Tunneler SPIFFE ID").fill("spiffe://b.example/tunneler/phone");
  await label(pa, "Expires").selectOption("at");
  await label(pa, "Expires at").fill("2099-01-01T00:00");
  await button(pa, "Grant").click();
  const phone = pa.locator('tr[data-grant-tunneler="spiffe://b.example/tunneler/phone"]');
  await phone.waitFor();
  assert.match(await phone.locator("td").nth(3).textContent(), /^2099-01-01T00:00:00Z \(in /);
  assert.equal(await phone.locator("td").nth(2).textContent(), "any");
  assert.match(await pa.locator('[data-grants-peer="b"] h3').textContent(), /^Granted to b \(2\)$/);
  const api = await pa.evaluate(async () => (await (await fetch("/api/admin/federation/grants?peer=b")).json()).grants);
  assert.deepEqual(api.map((g) => g.tunneler).sort(), [LAPTOP, "spiffe://b.example/tunneler/phone"]);
  await shot(pa, "federation");

  pa.once("dialog", (d) => void d.accept());
  await pa.getByRole("button", { name: `Revoke grant of pg to ${LAPTOP}` }).click();
  await laptop.waitFor({ state: "detached" });
  assert.match(await pa.getByTestId("federation-status").textContent(), /^Revoked grant [0-9a-f]+: spiffe:\/\/b\.example\/tunneler\/laptop no longer reaches pg\.$/);
  const left = await pa.evaluate(async () => (await (await fetch("/api/admin/federation/grants")).json()).grants);
  assert.deepEqual(left.map((g) => g.tunneler), ["spiffe://b.example/tunneler/phone"]);
});

test("A: suspend b with a reason; B's sweep marks a degraded; resume: active on both", async () => {
  await button(pa, "Suspend peer b…").click();
  await label(pa, "Reason").fill("maintenance window");
  await button(pa, "Suspend b").click();
  await waitState(pa, "b", "suspended");
  assert.equal(await peerRow(pa, "b").getByTestId("reason").textContent(), "maintenance window");
  assert.equal(await peerRow(pa, "b").locator(".status").getAttribute("class"), "status status-expired");
  await button(pa, "Resume peer b").waitFor();
  // B's link is refused now: its sweep finds a's heartbeat stale (2 s here).
  await waitState(pb, "a", "degraded", 15_000);
  assert.match(await peerRow(pb, "a").getByTestId("reason").textContent(), /^no heartbeat for \d+s$/);
  assert.equal(await peerRow(pb, "a").locator(".status").getAttribute("class"), "status status-offline");
  await shot(pb, "federation-degraded");
  await shot(pa, "federation-suspended");
  await button(pa, "Resume peer b").click();
  await waitState(pa, "b", "active", 15_000);
  await waitState(pb, "a", "active", 15_000);
  assert.equal(await peerRow(pb, "a").getByTestId("reason").textContent(), "-");
});

test("A: propose c; New token replaces it; revoke c once its name is typed", async () => {
  await label(pa, "Peer name").fill("c");
  await button(pa, "Propose").click();
  const first = (await pa.getByTestId("token-text").textContent()) ?? "";
  keep(first);
  await button(pa, "Done").click();
  await waitState(pa, "c", "proposed");
  await button(pa, "New token for peer c").click();
  await pa.getByTestId("federation-status").getByText("A new token for c; the previous one no longer works.").waitFor();
  const second = (await pa.getByTestId("token-text").textContent()) ?? "";
  keep(second);
  assert.match(second, /^ztrfed1\./);
  assert.notEqual(second, first);
  await button(pa, "Done").click();
  await button(pa, "Revoke peer c…").click();
  const confirm = button(pa, "Revoke c");
  assert.equal(await confirm.isDisabled(), true, "disabled until the name is typed");
  await label(pa, "Type the peer's name").fill("");
  await label(pa, "Type the peer's name").pressSequentially("c");
  assert.equal(await confirm.isDisabled(), false);
  await confirm.click();
  await waitState(pa, "c", "revoked");
  assert.equal(await peerRow(pa, "c").locator(".status").getAttribute("class"), "status status-revoked");
  assert.equal(await peerRow(pa, "c").locator("button").count(), 0, "nothing more to do to a revoked peer");
  await waitState(pa, "b", "active");
});

test("the tokens are in no page, web storage, cookie or URL once dismissed, even after a reload", async () => {
  assert.equal(tokens.length, 3);
  await assertGone(pa, "A");
  await assertGone(pb, "B");
  await pa.reload();
  await waitState(pa, "b", "active");
  await assertGone(pa, "A reloaded");
  assert.ok(!(await pa.content()).includes(ADMIN_TOKEN), "the admin token is not in the page");
});

test("a change without the CSRF token is refused", async () => {
  const r = await pa.request.post(A_UI + "/api/admin/federation/grants", {
    headers: { Origin: A_UI, "content-type": "application/json" },
    data: { peer: "b", resource: "pg", tunneler: LAPTOP },
  });
  assert.equal(r.status(), 403);
  const d = await pa.request.post(A_UI + "/api/admin/federation/peers/b/suspend", {
    headers: { Origin: A_UI, "content-type": "application/json" },
    data: {},
  });
  assert.equal(d.status(), 403);
  await waitState(pa, "b", "active");
});

test("light and dark: every text on the Federation page at least 4.5:1; dark screenshot", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, colorScheme });
    try {
      const p = await ctx.newPage();
      await login(p, A_UI);
      await p.goto(A_UI + "/federation");
      await waitState(p, "b", "active");
      await p.locator("tr[data-grant-id]").first().waitFor();
      assert.deepEqual(await lowContrast(p), [], `${colorScheme} /federation: text below 4.5:1`);
      if (colorScheme === "dark") await shot(p, "federation-dark");
    } finally {
      await ctx.close();
    }
  }
});
