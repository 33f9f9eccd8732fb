// POST /api/session: log in with the console's password (a form post from
// /login, or JSON with Accept: application/json for scripts).
import type { NextRequest } from "next/server";
import { readBody } from "@/lib/body";
import { log } from "@/lib/log";
import { isTls, peerOf, sameOrigin } from "@/lib/request";
import { createSession, loginBlockedFor, passwordMatches, recordFailure, sessionCookie } from "@/lib/session";

export const dynamic = "force-dynamic";

function answer(req: NextRequest, status: number, error: string | null, extra: Record<string, string> = {}): Response {
  const wantsJson = (req.headers.get("accept") ?? "").includes("application/json");
  if (wantsJson)
    return new Response(JSON.stringify(error === null ? { ok: true } : { error }), {
      status,
      headers: { "content-type": "application/json", "cache-control": "no-store", ...extra },
    });
  const to = error === null ? "/" : `/login?error=${encodeURIComponent(error)}`;
  return new Response(null, { status: 303, headers: { location: to, "cache-control": "no-store", ...extra } });
}

export async function POST(req: NextRequest): Promise<Response> {
  const peer = peerOf(req.headers);
  if (!sameOrigin(req.headers)) return answer(req, 403, "the login form must be sent from this console's page");
  const wait = loginBlockedFor(peer);
  if (wait > 0) {
    log("warn", "login refused: too many failures", { peer, retry_after_s: wait });
    return answer(req, 429, `too many failed logins: try again in ${wait} s`, { "retry-after": String(wait) });
  }
  let password = "";
  const type = req.headers.get("content-type") ?? "";
  // Before any login: a small body, read with a bound.
  const text = await readBody(req, 4096);
  if (text === null) return answer(req, 413, "login request too large");
  try {
    if (type.includes("application/json")) {
      const body = JSON.parse(text) as { password?: unknown };
      password = typeof body.password === "string" ? body.password : "";
    } else {
      password = new URLSearchParams(text).get("password") ?? "";
    }
  } catch {
    return answer(req, 400, "unreadable login request");
  }
  if (!passwordMatches(password, process.env.UI_PASSWORD)) {
    recordFailure(peer);
    log("warn", "login failed", { peer });
    return answer(req, 401, "wrong password");
  }
  const sess = createSession();
  log("info", "login", { peer });
  return answer(req, 200, null, { "set-cookie": sessionCookie(sess, isTls(req.headers)) });
}
