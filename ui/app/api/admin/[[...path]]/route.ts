// Every /api/admin/* request of the browser: the console's session and CSRF
// checks, then the admin API with the server's ADMIN_AUTH_TOKEN.
import type { NextRequest } from "next/server";
import { configOrLog, proxyLog, timeoutMs } from "@/lib/admin-config";
import { readBody } from "@/lib/body";
import { CONFIG_ERROR, MAX_REQUEST_BODY_BYTES, proxyAdmin } from "@/lib/proxy";
import { sameOrigin } from "@/lib/request";
import { csrfMatches, findSession, SESSION_COOKIE } from "@/lib/session";

export const dynamic = "force-dynamic";

function reply(status: number, body: string): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

async function handle(req: NextRequest, ctx: { params: Promise<{ path?: string[] }> }): Promise<Response> {
  const cfg = configOrLog();
  if (cfg === null) return reply(500, JSON.stringify({ error: CONFIG_ERROR }));
  const sess = findSession(req.cookies.get(SESSION_COOKIE)?.value);
  if (sess === null) return reply(401, JSON.stringify({ error: "log in to the console first" }));
  const method = req.method.toUpperCase();
  const changes = method !== "GET" && method !== "HEAD";
  if (changes && (!sameOrigin(req.headers) || !csrfMatches(sess, req.headers.get("x-csrf-token"))))
    return reply(403, JSON.stringify({ error: "CSRF check failed: reload the page and try again" }));
  let body: string | undefined;
  if (changes) {
    const text = await readBody(req, MAX_REQUEST_BODY_BYTES);
    if (text === null) return reply(413, JSON.stringify({ error: "request body larger than 1048576 bytes" }));
    body = text === "" ? undefined : text;
  }
  const { path = [] } = await ctx.params;
  const res = await proxyAdmin(
    { method, segments: path, search: req.nextUrl.search, body },
    cfg,
    { timeoutMs: timeoutMs(), log: proxyLog },
  );
  return reply(res.status, res.body);
}

export { handle as GET, handle as POST, handle as DELETE, handle as PUT, handle as PATCH };
