// The controller's events as the console asks for them: GET
// /api/admin/events filters in the database (node, kind, since/until) and
// pages newest first with a `before` cursor, so a page of the Events page
// or a node's timeline is one call. This module builds that call from what
// the operator typed, refusing what the controller would refuse, and reads
// the answer into a page and the cursor of the next (older) one.

export interface AdminEvent {
  id: number;
  at: number;
  kind: string;
  node_id: string;
  detail: string;
}

// What the controller records (docs/CONTROLLER.md, "Event kinds").
export const KINDS = ["admin", "alert", "denied", "enrolled", "reauthenticated", "renewed", "revoked", "security", "status"];
export const PAGE_SIZES = [5, 20, 50, 200];
export const DEFAULT_PAGE_SIZE = 50;
// The controller's cap on `limit`; a page asks for one row more than it
// shows, to know whether an older page exists.
export const MAX_LIMIT = 1000;

// A node id as the controller stores it (STORE_ID_MAX, hex in practice).
const NODE_ID = /^[A-Za-z0-9._-]{1,32}$/;

// The filter as the page holds it: strings straight from the controls and
// the URL, "" meaning any. since/until are datetime-local values read as
// UTC (the table shows UTC), to the second.
export interface EventFilter {
  node: string;
  kind: string;
  since: string;
  until: string;
}

export const NO_FILTER: EventFilter = { node: "", kind: "", since: "", until: "" };

// "YYYY-MM-DDTHH:MM" or "...:SS" as UTC Unix seconds; null: empty;
// undefined: not a time.
export function utcSeconds(v: string): number | null | undefined {
  if (v === "") return null;
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.\d{1,3})?)?$/.exec(v);
  if (m === null) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => Number(x ?? "0")) as [number, number, number, number, number, number];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  // Date.UTC rolls 30 February over into March: refuse what did not round-trip.
  if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || t.getUTCHours() !== h || t.getUTCMinutes() !== mi || t.getUTCSeconds() !== s)
    return undefined;
  return t.getTime() < 0 ? undefined : t.getTime() / 1000;
}

// The control a refusal is about, so the page can mark it ("range": From and To).
export type Field = "node" | "kind" | "since" | "until" | "range" | "size" | "before";
export type Query = { ok: true; query: string } | { ok: false; field: Field; message: string };

// The admin API query for the `size` newest events matching the filter
// with id < before (null: from the newest), or why it would be refused.
// `To` includes its own second: the controller's until is exclusive.
export function eventsQuery(filter: EventFilter, before: number | null, size: number): Query {
  if (!Number.isInteger(size) || size < 1 || size >= MAX_LIMIT)
    return { ok: false, field: "size", message: `The page size must be 1 to ${MAX_LIMIT - 1} events (not ${size}).` };
  if (before !== null && (!Number.isSafeInteger(before) || before < 1))
    return { ok: false, field: "before", message: `The page cursor must be an event id (not ${before}).` };
  if (filter.node !== "" && !NODE_ID.test(filter.node))
    return { ok: false, field: "node", message: `Node "${filter.node.slice(0, 80)}" is not a node id (letters, digits, . _ -; at most 32).` };
  if (filter.kind !== "" && !KINDS.includes(filter.kind))
    return { ok: false, field: "kind", message: `Kind "${filter.kind.slice(0, 80)}" is not an event kind (${KINDS.join(", ")}).` };
  const since = utcSeconds(filter.since);
  if (since === undefined) return { ok: false, field: "since", message: `From "${filter.since.slice(0, 40)}" is not a date and time (YYYY-MM-DDTHH:MM:SS, UTC).` };
  const until = utcSeconds(filter.until);
  if (until === undefined) return { ok: false, field: "until", message: `To "${filter.until.slice(0, 40)}" is not a date and time (YYYY-MM-DDTHH:MM:SS, UTC).` };
  if (since !== null && until !== null && until < since)
    return { ok: false, field: "range", message: `To (${filter.until}) is before From (${filter.since}): no event can match.` };

  const q = new URLSearchParams({ order: "desc", limit: String(size + 1) });
  if (filter.node !== "") q.set("node", filter.node);
  if (filter.kind !== "") q.set("kind", filter.kind);
  // since 0 means "no bound" to the controller: the epoch itself is no bound either.
  if (since !== null && since > 0) q.set("since", String(since));
  if (until !== null) q.set("until", String(until + 1));
  if (before !== null) q.set("before", String(before));
  return { ok: true, query: q.toString() };
}

export interface EventPage {
  events: AdminEvent[]; // newest first, at most the page size
  before: number | null; // the cursor of the next (older) page; null: none left
}

// The page out of an answer to eventsQuery (size + 1 rows asked): the
// extra row only says that an older page exists.
export function eventPage(rows: AdminEvent[], size: number): EventPage {
  const events = rows.slice(0, size);
  const last = events[events.length - 1];
  return { events, before: rows.length > size && last !== undefined ? last.id : null };
}

// The Events page's own URL query for a filter (what a link to it
// carries): only what is set, in the parameter names the page reads.
export function pageQuery(filter: EventFilter, size: number): string {
  const q = new URLSearchParams();
  if (filter.node !== "") q.set("node", filter.node);
  if (filter.kind !== "") q.set("kind", filter.kind);
  if (filter.since !== "") q.set("since", filter.since);
  if (filter.until !== "") q.set("until", filter.until);
  if (size !== DEFAULT_PAGE_SIZE) q.set("size", String(size));
  const s = q.toString();
  return s === "" ? "" : `?${s}`;
}

type Param = string | string[] | undefined;
const one = (v: Param) => (typeof v === "string" ? v : Array.isArray(v) ? (v[0] ?? "") : "");

// The filter and page size out of the Events page's URL query. What is
// malformed is kept as typed, for eventsQuery to say what is wrong with it.
export function filterFromQuery(params: Record<string, Param>): { filter: EventFilter; size: number } {
  const sizeText = one(params.size);
  const size = PAGE_SIZES.includes(Number(sizeText)) ? Number(sizeText) : DEFAULT_PAGE_SIZE;
  return {
    filter: { node: one(params.node), kind: one(params.kind), since: one(params.since), until: one(params.until) },
    size,
  };
}
