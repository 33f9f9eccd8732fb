#!/usr/bin/env node
// @ts-check
// ztr-ui: serves the built console (next build) on UI_LISTEN. Settings come
// only from the environment (docs/CONSOLE.md); secrets are never flags.
// Refuses a non-loopback address without TLS (UI_TLS_CERT/UI_TLS_KEY) or
// UI_LISTEN_INSECURE=true, like the admin API; logs `404 Not Found` for
// every 404 it serves (failure mode 6.1) and the exact line
// `ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured` when either is missing
// (6.2). Exit status: 0 stopped, 1 could not serve, 2 bad configuration.
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

process.env.NEXT_TELEMETRY_DISABLED = "1";
const DIR = dirname(fileURLToPath(import.meta.url));
const CONFIG_ERROR = "ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured";
const MIN_PASSWORD_LENGTH = 12;

/** @param {string} v */
function quote(v) {
  return v !== "" && /^[A-Za-z0-9._:/@+,-]+$/.test(v) ? v : `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}
/** @param {string} level @param {string} msg @param {Record<string, string|number>} [fields] */
function log(level, msg, fields = {}) {
  let line = `ts=${new Date().toISOString()} level=${level} msg=${quote(msg)}`;
  for (const [k, v] of Object.entries(fields)) line += ` ${k}=${quote(String(v))}`;
  process.stderr.write(line + "\n");
}
/** @param {string} msg @returns {never} */
function configError(msg) {
  log("error", msg);
  process.exit(2);
}

/** @param {string} name */
function env(name) {
  const v = process.env[name];
  return v === undefined ? "" : v.trim();
}

/** @param {string} name @param {boolean} dflt */
function envBool(name, dflt) {
  const v = env(name).toLowerCase();
  if (v === "") return dflt;
  if (["true", "yes", "1", "on"].includes(v)) return true;
  if (["false", "no", "0", "off"].includes(v)) return false;
  return configError(`env: ${name}: "${v}" is not a boolean (true or false)`);
}

/** @param {string} text @returns {{host: string, port: number}} */
function parseListen(text) {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(text);
  const host = m ? (m[1] ?? m[2] ?? "") : "";
  const port = m ? Number(m[3]) : -1;
  if (!m || isIP(host) === 0 || port > 65535)
    return configError(`env: UI_LISTEN: "${text}" is not host:port with an IP address (e.g. 127.0.0.1:3000 or [::1]:3000)`);
  return { host, port };
}

/** @param {string} host */
function isLoopback(host) {
  return host === "::1" || /^127\./.test(host);
}

function loadConfig() {
  if (process.argv.length > 2)
    configError("ztr-ui takes no arguments: it is configured by its environment (docs/CONSOLE.md)");
  const listenText = env("UI_LISTEN") || "127.0.0.1:3000";
  const listen = parseListen(listenText);
  const insecure = envBool("UI_LISTEN_INSECURE", false);
  const cert = env("UI_TLS_CERT");
  const key = env("UI_TLS_KEY");
  if ((cert === "") !== (key === "")) configError("env: UI_TLS_CERT and UI_TLS_KEY go together: set both or neither");
  /** @type {{cert: Buffer, key: Buffer} | null} */
  let tls = null;
  if (cert !== "") {
    try {
      tls = { cert: readFileSync(cert), key: readFileSync(key) };
    } catch (err) {
      configError(`env: UI_TLS_CERT/UI_TLS_KEY: cannot read: ${/** @type {Error} */ (err).message}`);
    }
  }
  if (!isLoopback(listen.host) && tls === null && !insecure)
    configError(
      `UI_LISTEN=${listenText} is not a loopback address: serve it over TLS (UI_TLS_CERT, UI_TLS_KEY) or set UI_LISTEN_INSECURE=true`,
    );
  const password = process.env.UI_PASSWORD ?? "";
  if (password === "")
    configError("UI_PASSWORD is required: the console never runs without a login (set it in the EnvironmentFile)");
  if (password.length < MIN_PASSWORD_LENGTH)
    configError(`env: UI_PASSWORD: too short: use at least ${MIN_PASSWORD_LENGTH} characters`);
  const adminUrl = env("ADMIN_API_URL");
  if (adminUrl !== "") {
    let u;
    try {
      u = new URL(adminUrl);
    } catch {
      u = null;
    }
    if (u === null || !["http:", "https:"].includes(u.protocol) || u.username !== "" || u.password !== "" || u.search !== "")
      configError(`env: ADMIN_API_URL: "${adminUrl}" must be an http:// or https:// URL, e.g. http://127.0.0.1:8080`);
    const h = u.hostname.replace(/^\[|\]$/g, "");
    if (u.protocol === "http:" && !isLoopback(h) && h !== "localhost")
      log("warn", "ADMIN_API_URL is plain HTTP to another host: the bearer token crosses the network in the clear", {
        admin_api_url: adminUrl,
      });
  }
  const timeout = env("ADMIN_API_TIMEOUT_MS");
  if (timeout !== "" && !(Number.isInteger(Number(timeout)) && Number(timeout) >= 100 && Number(timeout) <= 120000))
    configError(`env: ADMIN_API_TIMEOUT_MS: "${timeout}" must be milliseconds, 100..120000`);
  const poll = env("UI_POLL_INTERVAL_MS");
  if (poll !== "" && !(Number.isInteger(Number(poll)) && Number(poll) >= 250 && Number(poll) <= 2000))
    configError(`env: UI_POLL_INTERVAL_MS: "${poll}" must be milliseconds, 250..2000`);
  const allowed = env("UI_ALLOWED_HOSTS")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  return { listen, listenText, insecure, tls, adminUrl, allowed };
}

const cfg = loadConfig();
if (cfg.insecure && !isLoopback(cfg.listen.host) && cfg.tls === null)
  log("warn", "UI_LISTEN_INSECURE=true: the console's password and session cross the network in the clear", {
    listen: cfg.listenText,
  });
if (env("ADMIN_API_URL") === "" || (process.env.ADMIN_AUTH_TOKEN ?? "") === "") {
  process.stderr.write(CONFIG_ERROR + "\n");
  // The route handlers repeat it at most once a minute from now on.
  /** @type {any} */ (globalThis).__ztrConfigLogged = Date.now();
}

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  // same-origin, not no-referrer: with no-referrer a form post carries
  // `Origin: null`, and the login and logout forms check the origin.
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=()",
  // Next's App Router streams its data in inline scripts.
  "content-security-policy":
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
};

/** @type {((req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) | null} */
let handle = null;
/** @type {Set<string>} */
let allowedHosts = new Set();

/** @param {http.IncomingMessage} req @param {http.ServerResponse} res */
function serve(req, res) {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
  if (cfg.tls !== null) res.setHeader("strict-transport-security", "max-age=31536000");
  const path = (req.url ?? "/").split("?")[0] ?? "/";
  res.on("finish", () => {
    if (res.statusCode === 404) log("warn", "404 Not Found", { method: req.method ?? "?", path });
    else if (res.statusCode >= 500) log("error", "request failed", { method: req.method ?? "?", path, status: res.statusCode });
  });
  // A page served under another host name is a DNS-rebinding attempt.
  const host = (req.headers.host ?? "").toLowerCase();
  if (allowedHosts.size > 0 && !allowedHosts.has(host)) {
    res.writeHead(421, { "content-type": "text/plain" });
    res.end("421 Misdirected Request: unknown Host (add it to UI_ALLOWED_HOSTS)\n");
    return;
  }
  delete req.headers["x-ztr-peer"];
  delete req.headers["x-ztr-tls"];
  req.headers["x-ztr-peer"] = req.socket.remoteAddress ?? "unknown";
  req.headers["x-ztr-tls"] = cfg.tls !== null ? "1" : "0";
  if (handle === null) {
    res.writeHead(503, { "content-type": "text/plain", "retry-after": "1" });
    res.end("503 Service Unavailable: the console is starting\n");
    return;
  }
  handle(req, res).catch((err) => {
    log("error", "request handler failed", { path, error: String(err) });
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
}

const server = cfg.tls !== null ? https.createServer({ ...cfg.tls, minVersion: "TLSv1.3" }, serve) : http.createServer(serve);
server.on("error", (err) => {
  log("error", `bind ${cfg.listenText}: ${/** @type {NodeJS.ErrnoException} */ (err).code === "EADDRINUSE" ? "address already in use" : err.message}`);
  process.exit(1);
});
server.listen(cfg.listen.port, cfg.listen.host, async () => {
  const addr = server.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : cfg.listen.port;
  const shownHost = cfg.listen.host.includes(":") ? `[${cfg.listen.host}]` : cfg.listen.host;
  const hosts = [`${shownHost}:${port}`, ...cfg.allowed.map((h) => (h.includes(":") ? h : `${h}:${port}`))];
  if (isLoopback(cfg.listen.host)) hosts.push(`localhost:${port}`);
  if (isLoopback(cfg.listen.host) || cfg.allowed.length > 0) allowedHosts = new Set(hosts);
  try {
    const { default: next } = await import("next");
    const app = next({ dev: false, dir: DIR, hostname: cfg.listen.host, port });
    await app.prepare();
    handle = /** @type {any} */ (app.getRequestHandler());
  } catch (err) {
    log("error", `cannot load the built console (run make ui): ${/** @type {Error} */ (err).message}`);
    process.exit(1);
  }
  const url = `${cfg.tls !== null ? "https" : "http"}://${shownHost}:${port}`;
  log("info", "console started", {
    listen: cfg.listenText,
    port,
    url,
    tls: cfg.tls !== null ? "on" : "off",
    admin_api_url: cfg.adminUrl || "-",
  });
});

/** @param {string} sig */
function stop(sig) {
  log("info", "stopping", { signal: sig });
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
