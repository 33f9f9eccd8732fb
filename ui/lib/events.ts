// The controller's events (GET /api/admin/events: oldest first, after an
// id cursor, at most 1000 a page). The console reads them in pages and
// shows them newest first.
import { api, type ApiError } from "./client";

export interface AdminEvent {
  id: number;
  at: number;
  kind: string;
  node_id: string;
  detail: string;
}

export const EVENTS_PAGE = 1000;
// At most this many pages per look: 50 000 events, then the look stops and
// says so (the table holds up to EVENT_MAX, 100 000 by default).
export const MAX_PAGES = 50;

export interface EventScan {
  events: AdminEvent[]; // newest first
  scanned: number;
  truncated: boolean; // MAX_PAGES were read and more remained
}

// Every event (or those of one node), newest first.
export async function scanEvents(keep: (e: AdminEvent) => boolean): Promise<{ ok: true; scan: EventScan } | { ok: false; error: ApiError }> {
  const kept: AdminEvent[] = [];
  let after = 0;
  let scanned = 0;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await api<{ events: AdminEvent[] }>("GET", `events?after=${after}&limit=${EVENTS_PAGE}`);
    if (!res.ok) return res;
    const got = res.data.events;
    scanned += got.length;
    for (const e of got) if (keep(e)) kept.push(e);
    if (got.length < EVENTS_PAGE) return { ok: true, scan: { events: kept.reverse(), scanned, truncated: false } };
    after = got[got.length - 1]?.id ?? after;
  }
  return { ok: true, scan: { events: kept.reverse(), scanned, truncated: true } };
}
