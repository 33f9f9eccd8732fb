// lib/events.ts over the console's /api/admin/events, for the pages.
import { api } from "./client";
import { eventPage, newestId, type AdminEvent, type EventFilter, type EventPage, type GetEvents, type Result } from "./events";

export const getEvents: GetEvents = async (after, limit) => {
  const r = await api<{ events: AdminEvent[] }>("GET", `events?after=${after}&limit=${limit}`);
  return r.ok ? { ok: true, data: r.data.events } : r;
};

// A page of events matching the filter: the newest (before = null) or
// those older than the cursor `before`.
export async function loadEvents(filter: EventFilter, before: number | null, want: number): Promise<Result<EventPage>> {
  if (before === null) {
    const top = await newestId(getEvents);
    if (!top.ok) return top;
    before = top.data + 1;
  }
  return eventPage(getEvents, filter, before, want);
}
