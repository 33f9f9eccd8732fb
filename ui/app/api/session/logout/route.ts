// POST /api/session/logout (form field csrf or header x-csrf-token).
import type { NextRequest } from "next/server";
import { readBody } from "@/lib/body";
import { log } from "@/lib/log";
import { isTls, peerOf, sameOrigin } from "@/lib/request";
import { clearedCookie, csrfMatches, endSession, findSession, SESSION_COOKIE } from "@/lib/session";

export const dynamic = "force-dynamic";

export async function POST(req: NextRequest): Promise<Response> {
  const sess = findSession(req.cookies.get(SESSION_COOKIE)?.value);
  let token = req.headers.get("x-csrf-token");
  if (token === null && (req.headers.get("content-type") ?? "").includes("form")) {
    const text = await readBody(req, 4096);
    token = text === null ? null : new URLSearchParams(text).get("csrf");
  }
  if (sess !== null) {
    if (!sameOrigin(req.headers) || !csrfMatches(sess, token))
      return new Response(JSON.stringify({ error: "CSRF check failed: reload the page and try again" }), {
        status: 403,
        headers: { "content-type": "application/json" },
      });
    endSession(sess.id);
    log("info", "logout", { peer: peerOf(req.headers) });
  }
  return new Response(null, {
    status: 303,
    headers: { location: "/login", "set-cookie": clearedCookie(isTls(req.headers)), "cache-control": "no-store" },
  });
}
