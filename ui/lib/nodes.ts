// A node as the admin API gives it (docs/CONTROLLER.md, "A node object"),
// and how the console shows it.
export interface Node {
  id: string;
  name: string;
  role: "connector" | "tunneler" | string;
  spiffe_id: string;
  status: "ONLINE" | "DRAINING" | "OFFLINE" | "EXPIRED" | string;
  revoked: boolean;
  last_seen: number;
  cert_serial: string;
  cert_not_after: number;
  enrolled_at: number;
  renewal_overdue: boolean;
  addresses: string[];
  allowed_addresses?: string[];
  // A draining connector: the operator's drain, or its own before it stops.
  drain?: { by: "operator" | "shutdown" | string; since: number; deadline: number } | null;
}

export type Shown = "ONLINE" | "OFFLINE" | "EXPIRED" | "REVOKED";

// Revoked beats expired beats what the control plane says.
export function shownStatus(n: Node, nowS: number): Shown {
  if (n.revoked) return "REVOKED";
  if (n.status === "EXPIRED" || (n.cert_not_after > 0 && n.cert_not_after <= nowS)) return "EXPIRED";
  return n.status === "ONLINE" || n.status === "DRAINING" ? "ONLINE" : "OFFLINE";
}

// "DRAINING (by the operator, open streams closed in 9 min)", or null when
// the connector takes new streams.
export function drainText(n: Node, nowS: number): string | null {
  if (n.drain === undefined || n.drain === null) return null;
  const who = n.drain.by === "operator" ? "by the operator" : "stopping";
  const left = n.drain.deadline - nowS;
  const when = !n.drain.deadline
    ? ""
    : left > 0
      ? `, open streams closed in ${relative(left)}`
      : ", deadline passed: open streams closed";
  return `DRAINING (${who}${when})`;
}

export function relative(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function lastSeenText(n: Node, nowS: number): string {
  if (!n.last_seen) return "never";
  const d = nowS - n.last_seen;
  return d <= 1 ? "just now" : `${relative(d)} ago`;
}

export function expiryText(n: Node, nowS: number): string {
  if (!n.cert_not_after) return "-";
  const d = n.cert_not_after - nowS;
  return d > 0 ? `in ${relative(d)}` : `expired ${relative(d)} ago`;
}

// One page of the node list as the admin API answers it (docs/CONTROLLER.md,
// "Pages of nodes"): the controller searches, filters and pages; counts
// cover the whole fleet.
export interface NodePage {
  nodes: Node[];
  total: number;
  offset: number;
  limit: number;
  counts: Record<Shown, number>;
  now: number;
}

export interface NodeSelection {
  q: string;
  state: string; // "" = any
  role: string; // "" = any
  offset: number;
  limit: number;
}

export const PAGE_SIZE = 50;

// The query string for /api/admin/nodes and /api/admin/fleet; empty
// filters are left out.
export function selectionQuery(sel: NodeSelection): string {
  const p = new URLSearchParams();
  const q = sel.q.trim();
  if (q !== "") p.set("q", q);
  if (sel.state !== "") p.set("state", sel.state);
  if (sel.role !== "") p.set("role", sel.role);
  p.set("offset", String(Math.max(0, Math.floor(sel.offset))));
  p.set("limit", String(Math.max(1, Math.floor(sel.limit))));
  return p.toString();
}

// "51–100 of 10000": what the page shows.
export function pageText(offset: number, shown: number, total: number): string {
  if (total === 0 || shown === 0) return `0 of ${total}`;
  return `${offset + 1}–${offset + shown} of ${total}`;
}

// Where the page starts once the total changed under it (nodes removed
// or a filter narrowed): the last page that still has rows.
export function clampOffset(offset: number, total: number, limit: number): number {
  if (offset < total) return offset;
  return total === 0 ? 0 : Math.floor((total - 1) / limit) * limit;
}
