// The browser's calls to the console's own /api/admin/* routes.

export interface ApiError {
  status: number;
  text: string;
}

const STATUS_TEXT: Record<number, string> = {
  400: "400 Bad Request",
  401: "401 Unauthorized",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  409: "409 Conflict",
  429: "429 Too Many Requests",
  500: "500 Internal Server Error",
  502: "502 Bad Gateway",
  504: "504 Gateway Timeout",
};

export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? String(status);
}

function csrf(): string {
  return document.querySelector('meta[name="ztr-csrf"]')?.getAttribute("content") ?? "";
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<{ ok: true; data: T } | { ok: false; error: ApiError }> {
  let res: Response;
  try {
    res = await fetch(`/api/admin/${path}`, {
      method,
      cache: "no-store",
      headers: method === "GET" ? {} : { "content-type": "application/json", "x-csrf-token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, error: { status: 0, text: "the console's server cannot be reached" } };
  }
  if (res.status === 401) {
    window.location.assign("/login");
    return { ok: false, error: { status: 401, text: "log in to the console first" } };
  }
  let parsed: unknown = null;
  try {
    parsed = await res.json();
  } catch {
    parsed = null;
  }
  if (!res.ok) {
    const text = (parsed as { error?: string } | null)?.error ?? "no error text";
    return { ok: false, error: { status: res.status, text } };
  }
  return { ok: true, data: parsed as T };
}
