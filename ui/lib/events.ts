// The controller's events, newest first. GET /api/admin/events lists them
// oldest first after an id cursor (at most 1000 a call) and filters
// nothing, so the console reads windows of ids backwards from the newest:
// ids are never reused and pruning removes the oldest first, so the ids
// left are one unbroken run, and a window of 1000 ids is one call.

export interface AdminEvent {
  id: number;
  at: number;
  kind: string;
  node_id: string;
  detail: string;
}

export interface Failure {
  status: number;
  text: string;
}

export type Result<T> = { ok: true; data: T } | { ok: false; error: Failure };

// One call: the events with id > after, oldest first, at most limit.
export type GetEvents = (after: number, limit: number) => Promise<Result<AdminEvent[]>>;

export const WINDOW = 1000;
// A page stops after reading this many windows (20 000 events) even when
// it has fewer matches than asked; its cursor then continues from there.
export const MAX_WINDOWS = 20;

export interface EventFilter {
  node_id: string; // "" = any
  kind: string; // "" = any
  since?: number; // Unix seconds, at >= since (0 or absent: any)
  until?: number; // Unix seconds, at <= until (0 or absent: any)
}

export interface EventPage {
  events: AdminEvent[]; // newest first
  before: number | null; // the cursor of the next (older) page; null: none left
  scanned: number; // events read for this page
}

export const matches = (e: AdminEvent, f: EventFilter) =>
  (f.node_id === "" || e.node_id === f.node_id) &&
  (f.kind === "" || e.kind === f.kind) &&
  (!f.since || e.at >= f.since) &&
  (!f.until || e.at <= f.until);

// The newest event's id (0: none), in about 2·log2(id) calls of one row:
// "after=x&limit=1" answers the first id above x, or nothing.
export async function newestId(get: GetEvents): Promise<Result<number>> {
  // lo: an id that exists (0: none yet); hi: no id above it (null: unknown).
  let lo = 0;
  let hi: number | null = null;
  while (hi === null || hi > lo) {
    const probe: number = hi === null ? (lo === 0 ? 0 : Math.max(lo * 2, 1024)) : Math.floor((lo + hi) / 2);
    const r = await get(probe, 1);
    if (!r.ok) return r;
    const first = r.data[0];
    if (first === undefined) hi = probe;
    else lo = first.id;
  }
  return { ok: true, data: lo };
}

// Up to `want` events matching the filter with id < before, newest first.
export async function eventPage(get: GetEvents, filter: EventFilter, before: number, want: number): Promise<Result<EventPage>> {
  const out: AdminEvent[] = [];
  let top = before - 1; // the highest id still to read
  let scanned = 0;
  for (let w = 0; w < MAX_WINDOWS && top > 0; w++) {
    const after = Math.max(0, top - WINDOW);
    const r = await get(after, WINDOW);
    if (!r.ok) return r;
    const inWindow = r.data.filter((e) => e.id <= top);
    // Nothing in (after, top]: everything older was pruned too.
    if (inWindow.length === 0) return { ok: true, data: { events: out, before: null, scanned } };
    for (let i = inWindow.length - 1; i >= 0; i--) {
      const e = inWindow[i]!;
      scanned++;
      // Events are written with the controller's clock in id order: the
      // first one older than `since` ends the search.
      if (filter.since && e.at < filter.since) return { ok: true, data: { events: out, before: null, scanned } };
      if (!matches(e, filter)) continue;
      out.push(e);
      if (out.length === want) {
        const more = i > 0 || after > 0;
        return { ok: true, data: { events: out, before: more ? e.id : null, scanned } };
      }
    }
    top = after;
  }
  return { ok: true, data: { events: out, before: top > 0 ? top + 1 : null, scanned } };
}
