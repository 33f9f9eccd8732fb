// Federation peers and grants as the admin API gives them (docs/CONTROLLER.md,
// docs/FEDERATION.md), and how the Federation page shows and asks for them.
// Framework-free so the unit tests drive it.

export interface Peer {
  id: string;
  name: string;
  trust_domain: string;
  url: string;
  direction: "inbound" | "outbound" | string;
  state: string;
  token_pending: boolean;
  token_expires_at: number;
  bundle_version: number;
  last_heartbeat_at: number;
  last_heartbeat_age_s?: number; // once a heartbeat arrived
  reason: string;
  created_at: number;
  updated_at: number;
}

export interface Grant {
  id: string;
  peer: string;
  peer_id: string;
  resource: string;
  tunneler: string;
  source_cidrs: string[];
  expires_at: number; // 0: never
  created_at: number;
  state: "active" | "expired" | string;
}

export const STATES = ["proposed", "accepted", "enrolled", "active", "degraded", "suspended", "revoked"];

// The colour class of a state, the node states' palette: active is ONLINE's
// green, degraded OFFLINE's orange, suspended EXPIRED's red, revoked
// REVOKED's purple; the steps on the way to active are plain text. The
// state is always written too.
export function stateClass(state: string): string {
  switch (state) {
    case "active":
      return "status status-online";
    case "degraded":
      return "status status-offline";
    case "suspended":
      return "status status-expired";
    case "revoked":
      return "status status-revoked";
    default:
      return "status";
  }
}

export function ageText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function heartbeatText(p: Peer): string {
  if (p.last_heartbeat_age_s === undefined) return "never";
  return `${ageText(p.last_heartbeat_age_s)} ago`;
}

// What may be done to a peer in its state (the controller refuses the rest).
export function peerActions(p: Peer): { token: boolean; suspend: boolean; resume: boolean; revoke: boolean } {
  return {
    token: p.state === "proposed",
    suspend: p.state !== "suspended" && p.state !== "revoked",
    resume: p.state === "suspended",
    revoke: p.state !== "revoked",
  };
}

// Peers a grant can name: those whose trust domain we know and that are live.
export function grantablePeers(peers: Peer[]): Peer[] {
  return peers.filter((p) => p.trust_domain !== "" && p.state !== "revoked");
}

export function grantsByPeer(grants: Grant[]): Map<string, Grant[]> {
  const m = new Map<string, Grant[]>();
  for (const g of grants) {
    const list = m.get(g.peer) ?? [];
    list.push(g);
    m.set(g.peer, list);
  }
  return m;
}

export function expiryText(g: Grant, nowS: number): string {
  if (g.expires_at === 0) return "never";
  const iso = new Date(g.expires_at * 1000).toISOString().replace(".000Z", "Z");
  const d = g.expires_at - nowS;
  return d > 0 ? `${iso} (in ${ageText(d)})` : `${iso} (${ageText(-d)} ago)`;
}

// The grant form as the page holds it: strings straight from the controls.
// expiry: "never", "in" (expiresIn, a duration such as 2h) or "at"
// (expiresAt, a datetime-local value read as UTC).
export interface GrantForm {
  peer: string;
  resource: string;
  tunneler: string;
  cidrs: string; // separated by spaces, commas or new lines
  expiry: "never" | "in" | "at";
  expiresIn: string;
  expiresAt: string;
}

export type GrantBody = {
  peer: string;
  resource: string;
  tunneler: string;
  source_cidrs?: string[];
  expires_in?: string;
  expires_at?: number;
};

// "YYYY-MM-DDTHH:MM[:SS]" as UTC Unix seconds, or null when it is not one.
function utcSeconds(v: string): number | null {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?$/.exec(v);
  if (m === null) return null;
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => Number(x ?? "0")) as [number, number, number, number, number, number];
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || t.getUTCHours() !== h || t.getUTCMinutes() !== mi)
    return null;
  return t.getTime() / 1000;
}

// The body of POST federation/grants, or what is missing. Only what the
// page alone can know is checked here (a field left empty, a time that is
// not one); the trust domain, the resource and the CIDRs are the
// controller's to judge, and its refusal is shown as it says it.
export function grantBody(f: GrantForm): { ok: true; body: GrantBody } | { ok: false; message: string } {
  const peer = f.peer.trim();
  const resource = f.resource.trim();
  const tunneler = f.tunneler.trim();
  if (peer === "") return { ok: false, message: "Choose a peer." };
  if (resource === "") return { ok: false, message: "Choose a resource." };
  if (tunneler === "") return { ok: false, message: "Give the tunneler's SPIFFE ID (spiffe://<peer's trust domain>/tunneler/<name>)." };
  const body: GrantBody = { peer, resource, tunneler };
  const cidrs = f.cidrs.split(/[\s,]+/).filter((c) => c !== "");
  if (cidrs.length > 0) body.source_cidrs = cidrs;
  if (f.expiry === "in") {
    const d = f.expiresIn.trim();
    if (d === "") return { ok: false, message: "Give how long the grant lasts (e.g. 2h), or choose never." };
    body.expires_in = d;
  } else if (f.expiry === "at") {
    const at = utcSeconds(f.expiresAt);
    if (at === null) return { ok: false, message: `Expires at (${f.expiresAt || "empty"}) is not a time (UTC).` };
    body.expires_at = at;
  }
  return { ok: true, body };
}

// The SPIFFE ID a grant for this peer's tunneler NAME would name.
export const tunnelerId = (p: Peer | undefined, name: string) =>
  p === undefined || p.trust_domain === "" ? "" : `spiffe://${p.trust_domain}/tunneler/${name}`;
