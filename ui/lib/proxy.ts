// The server side of /api/admin/*: which admin API routes the console
// forwards, and how the controller's answers (or its absence) map to what
// the browser sees. Framework-free so the unit tests drive it directly; the
// token is added here and never leaves the server.

import { readStreamBounded } from "./body";

export const CONFIG_ERROR = "ADMIN_API_URL or ADMIN_AUTH_TOKEN not configured";

export interface AdminConfig {
  url: string; // ADMIN_API_URL without a trailing slash
  token: string; // ADMIN_AUTH_TOKEN
}

export type Method = "GET" | "POST" | "DELETE";

export interface ProxyRequest {
  method: string;
  segments: string[]; // the path after /api/admin/, decoded
  search: string; // "" or "?a=b"
  body?: string;
}

export interface ProxyResponse {
  status: number;
  body: string; // always a JSON document
}

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface ProxyOptions {
  fetch?: FetchLike;
  timeoutMs?: number;
  maxBodyBytes?: number;
  log?: (level: "info" | "warn" | "error", msg: string, fields: Record<string, string | number>) => void;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
// 10 000 nodes of ~500 bytes each, with room to spare.
export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024;
export const MAX_REQUEST_BODY_BYTES = 1024 * 1024;

export function adminConfig(env: Record<string, string | undefined> = process.env): AdminConfig | null {
  const url = (env.ADMIN_API_URL ?? "").trim();
  const token = env.ADMIN_AUTH_TOKEN ?? "";
  if (url === "" || token === "") return null;
  return { url: url.replace(/\/+$/, ""), token };
}

// A name or id segment: what the controller accepts for node ids, token
// ids and resource names; never "." or "..", never a slash.
const SEG = "[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}";

// The admin API's routes (docs/CONTROLLER.md, "The admin API").
const ROUTES: { pattern: RegExp; methods: Method[] }[] = [
  { pattern: /^nodes$/, methods: ["GET"] },
  { pattern: new RegExp(`^nodes/${SEG}$`), methods: ["GET"] },
  { pattern: new RegExp(`^nodes/${SEG}/addresses$`), methods: ["POST"] },
  { pattern: new RegExp(`^nodes/${SEG}/revoke$`), methods: ["POST"] },
  { pattern: /^tokens$/, methods: ["GET", "POST"] },
  { pattern: new RegExp(`^tokens/${SEG}$`), methods: ["DELETE"] },
  { pattern: /^resources$/, methods: ["GET", "POST"] },
  { pattern: new RegExp(`^resources/${SEG}$`), methods: ["DELETE"] },
  { pattern: new RegExp(`^resources/${SEG}/connectors$`), methods: ["POST", "DELETE"] },
  { pattern: /^allowlist$/, methods: ["GET", "POST", "DELETE"] },
  { pattern: /^events$/, methods: ["GET"] },
  { pattern: /^explain$/, methods: ["GET"] },
  { pattern: /^fleet$/, methods: ["GET"] },
  { pattern: /^controllers$/, methods: ["GET"] },
  { pattern: /^ca$/, methods: ["GET"] },
  { pattern: /^ca\/rotate$/, methods: ["POST"] },
  { pattern: /^federation\/peers$/, methods: ["GET", "POST"] },
  { pattern: new RegExp(`^federation/peers/${SEG}$`), methods: ["GET"] },
  { pattern: new RegExp(`^federation/peers/${SEG}/(token|suspend|resume|revoke)$`), methods: ["POST"] },
  { pattern: /^federation\/accept$/, methods: ["POST"] },
  { pattern: /^federation\/grants$/, methods: ["GET", "POST"] },
  { pattern: new RegExp(`^federation/grants/${SEG}$`), methods: ["DELETE"] },
];

export type RouteMatch = { kind: "ok"; method: Method } | { kind: "no-route" } | { kind: "method"; allowed: Method[] };

export function matchRoute(method: string, segments: string[]): RouteMatch {
  const path = segments.join("/");
  if (segments.some((s) => s === "" || s.includes("/"))) return { kind: "no-route" };
  const route = ROUTES.find((r) => r.pattern.test(path));
  if (route === undefined) return { kind: "no-route" };
  const m = method.toUpperCase();
  if (!route.methods.includes(m as Method)) return { kind: "method", allowed: route.methods };
  return { kind: "ok", method: m as Method };
}

function json(status: number, value: unknown): ProxyResponse {
  return { status, body: JSON.stringify(value) };
}

export function errorBody(status: number, error: string): ProxyResponse {
  return json(status, { error });
}

// The reason a connection attempt failed, in words an operator acts on.
function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  switch (cause?.code) {
    case "ECONNREFUSED":
      return "connection refused";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "host not found";
    case "ECONNRESET":
      return "connection reset";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "host unreachable";
    case "UND_ERR_SOCKET":
      return "connection closed";
    default:
      return cause?.message ?? (err instanceof Error ? err.message : String(err));
  }
}

function upstreamError(text: string): string {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === "object" && typeof (parsed as { error?: unknown }).error === "string")
      return (parsed as { error: string }).error;
  } catch {
    // not JSON: the caller says so
  }
  return "";
}

export async function proxyAdmin(
  req: ProxyRequest,
  cfg: AdminConfig | null,
  opts: ProxyOptions = {},
): Promise<ProxyResponse> {
  const log = opts.log ?? (() => {});
  if (cfg === null) return errorBody(500, CONFIG_ERROR);
  const route = matchRoute(req.method, req.segments);
  const shown = `${req.method.toUpperCase()} /api/admin/${req.segments.join("/")}`;
  if (route.kind === "no-route") return errorBody(404, `not found: the console has no route ${shown}`);
  if (route.kind === "method") return errorBody(405, `method not allowed: ${shown} (allowed: ${route.allowed.join(", ")})`);

  const base = cfg.url.replace(/\/+$/, "");
  const upstream = `${base}/api/admin/${req.segments.map(encodeURIComponent).join("/")}${req.search}`;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const doFetch: FetchLike = opts.fetch ?? ((url, init) => fetch(url, init));
  const headers: Record<string, string> = { authorization: `Bearer ${cfg.token}`, accept: "application/json" };
  if (req.body !== undefined) headers["content-type"] = "application/json";
  let res: Response;
  try {
    res = await doFetch(upstream, {
      method: route.method,
      headers,
      body: req.body,
      redirect: "manual", // a redirect could carry the token elsewhere
      signal: AbortSignal.timeout(timeoutMs),
      cache: "no-store",
    });
  } catch (err) {
    const name = (err as { name?: string } | undefined)?.name;
    if (name === "TimeoutError" || name === "AbortError") {
      const msg = `the controller did not answer within ${timeoutMs / 1000} s (ADMIN_API_URL=${cfg.url})`;
      log("warn", "controller timed out", { upstream: `${route.method} ${upstream}`, timeout_ms: timeoutMs });
      return errorBody(504, msg);
    }
    const reason = networkReason(err);
    log("warn", "controller unreachable", { upstream: `${route.method} ${upstream}`, error: reason });
    return errorBody(502, `cannot reach the controller at ${cfg.url}: ${reason}`);
  }

  let text: string | null;
  try {
    text = await readStreamBounded(res.body, opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
  } catch (err) {
    const reason = networkReason(err);
    log("warn", "controller answer cut short", { upstream: `${route.method} ${upstream}`, error: reason });
    return errorBody(502, `the controller's answer was cut short: ${reason}`);
  }
  if (text === null) return errorBody(502, "the controller's answer is larger than the console accepts");
  const upstreamText = upstreamError(text);

  if (res.status >= 300 && res.status < 400)
    return errorBody(502, `the controller answered a redirect (${res.status}): is ADMIN_API_URL the admin API's address?`);
  if (res.status === 401) {
    log("error", "the controller refused ADMIN_AUTH_TOKEN", { upstream: `${route.method} ${upstream}`, status: 401 });
    return errorBody(502, "the controller refused the console's ADMIN_AUTH_TOKEN (401 unauthorized): set the controller's token");
  }
  let isJson = true;
  try {
    JSON.parse(text);
  } catch {
    isJson = false;
  }
  if (res.status === 404) {
    // The controller has no such path (a wrong ADMIN_API_URL prefix) or no
    // such row; either way the operator reads it in the log.
    log("warn", "404 Not Found", { upstream: `${route.method} ${upstream}`, error: upstreamText || "(no JSON error)" });
    if (!isJson) return errorBody(404, `404 Not Found from ${cfg.url}: is ADMIN_API_URL the controller's admin API?`);
    return { status: 404, body: text };
  }
  if (!isJson)
    return errorBody(502, `the controller answered ${res.status} with a body that is not JSON: is ADMIN_API_URL the controller's admin API?`);
  if (res.status >= 500) {
    log("error", "controller error", { upstream: `${route.method} ${upstream}`, status: res.status, error: upstreamText });
    return errorBody(502, `the controller failed (${res.status}): ${upstreamText || "no error text"}`);
  }
  return { status: res.status, body: text };
}
