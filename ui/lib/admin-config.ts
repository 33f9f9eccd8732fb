// The console's settings that route handlers and pages read at request time.
import { log } from "./log";
import { adminConfig, CONFIG_ERROR, DEFAULT_TIMEOUT_MS, type AdminConfig } from "./proxy";

const g = globalThis as typeof globalThis & { __ztrConfigLogged?: number };

// Null when ADMIN_API_URL or ADMIN_AUTH_TOKEN is missing; then the exact
// line of the failure-modes document is logged (at most once a minute: the
// pages poll).
export function configOrLog(): AdminConfig | null {
  const cfg = adminConfig();
  if (cfg === null) {
    const now = Date.now();
    if (g.__ztrConfigLogged === undefined || now - g.__ztrConfigLogged > 60_000) {
      g.__ztrConfigLogged = now;
      process.stderr.write(CONFIG_ERROR + "\n");
    }
  }
  return cfg;
}

export function timeoutMs(): number {
  const v = Number(process.env.ADMIN_API_TIMEOUT_MS);
  return Number.isInteger(v) && v > 0 ? v : DEFAULT_TIMEOUT_MS;
}

export function pollMs(): number {
  const v = Number(process.env.UI_POLL_INTERVAL_MS);
  return Number.isInteger(v) && v >= 250 && v <= 2000 ? v : 1000;
}

export const proxyLog = (level: "info" | "warn" | "error", msg: string, fields: Record<string, string | number>) =>
  log(level, msg, fields);
