// Bodies read with a bound: neither a client nor the controller can make
// the console buffer more than LIMIT bytes, declared or chunked.

// The whole stream as text, or null once it passes limit (the rest is
// cancelled, not read).
export async function readStreamBounded(body: ReadableStream<Uint8Array> | null, limit: number): Promise<string | null> {
  if (body === null) return "";
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

// A request's body; a declared length over limit is refused unread.
export async function readBody(req: Request, limit: number): Promise<string | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) return null;
  return readStreamBounded(req.body, limit);
}
