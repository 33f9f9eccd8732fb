// lib/events.ts over the console's /api/admin/events, for the pages: one
// call per page, the filtering done by the controller.
import { api, type ApiError } from "./client";
import { eventPage, eventsQuery, type AdminEvent, type EventFilter, type EventPage, type Field } from "./events";

export type PageResult = { ok: true; data: EventPage } | { ok: false; invalid: { field: Field; message: string } } | { ok: false; error: ApiError };

// The `size` newest events matching the filter, older than the cursor
// `before` (null: from the newest). A filter the controller would refuse
// is not sent: `invalid` says which control is wrong, and how.
export async function loadEvents(filter: EventFilter, before: number | null, size: number): Promise<PageResult> {
  const q = eventsQuery(filter, before, size);
  if (!q.ok) return { ok: false, invalid: { field: q.field, message: q.message } };
  const r = await api<{ events: AdminEvent[] }>("GET", `events?${q.query}`);
  if (!r.ok) return r;
  return { ok: true, data: eventPage(r.data.events ?? [], size) };
}
