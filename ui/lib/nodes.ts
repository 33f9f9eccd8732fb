// A node as the admin API gives it (docs/CONTROLLER.md, "A node object"),
// and how the console shows it.
export interface Node {
  id: string;
  name: string;
  role: "connector" | "tunneler" | string;
  spiffe_id: string;
  status: "ONLINE" | "OFFLINE" | "EXPIRED" | string;
  revoked: boolean;
  last_seen: number;
  cert_serial: string;
  cert_not_after: number;
  enrolled_at: number;
  renewal_overdue: boolean;
  addresses: string[];
  allowed_addresses?: string[];
}

export type Shown = "ONLINE" | "OFFLINE" | "EXPIRED" | "REVOKED";

// Revoked beats expired beats what the control plane says.
export function shownStatus(n: Node, nowS: number): Shown {
  if (n.revoked) return "REVOKED";
  if (n.status === "EXPIRED" || (n.cert_not_after > 0 && n.cert_not_after <= nowS)) return "EXPIRED";
  return n.status === "ONLINE" ? "ONLINE" : "OFFLINE";
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

export function matchesFilter(n: Node, shown: Shown, q: string, status: string, role: string): boolean {
  if (status !== "" && shown !== status) return false;
  if (role !== "" && n.role !== role) return false;
  if (q === "") return true;
  const needle = q.toLowerCase();
  return [n.name, n.id, n.spiffe_id, ...(n.addresses ?? [])].some((v) => v.toLowerCase().includes(needle));
}
