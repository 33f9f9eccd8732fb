// What route handlers and pages need to know about the request; server.mjs
// sets x-ztr-peer and x-ztr-tls after removing any a client sent.
import { cookies } from "next/headers";
import { findSession, SESSION_COOKIE, type Session } from "./session";

export function peerOf(h: Headers): string {
  return h.get("x-ztr-peer") ?? "unknown";
}

export function isTls(h: Headers): boolean {
  return h.get("x-ztr-tls") === "1";
}

// A state change must come from a page of this console: the browser names
// the page's origin, and it must be this host.
export function sameOrigin(h: Headers): boolean {
  const origin = h.get("origin");
  const host = h.get("host");
  if (origin === null || host === null) return false;
  return origin === `${isTls(h) ? "https" : "http"}://${host}`;
}

export async function currentSession(): Promise<Session | null> {
  const jar = await cookies();
  return findSession(jar.get(SESSION_COOKIE)?.value);
}
