// The controller's fleet view (docs/CONTROLLER.md, "The fleet view"): per
// node, the certificate horizon and the runbook's counters with their
// 5-minute deltas.
export interface FleetNode {
  id: string;
  name: string;
  role: string;
  state: string;
  last_seen: number;
  sessions: number;
  cert_not_after: number;
  expires_in_s: number;
  cert_issued_at: number;
  renew_at: number;
  renewal_deadline: number;
  last_renewed_at: number;
  renewal_missed: boolean;
  flapping: boolean;
  reconnects_5m: number;
  counters: Record<string, number> | null;
  counters_at: number;
  deltas_5m: Record<string, number> | null;
  deltas_window_s: number;
  flags: string[];
  bundle_version: number | null; // as its last heartbeat reported; null: not yet
}

export interface Escalation {
  failure: string;
  nodes: number;
  names: string[];
  logged_at: number;
}

// The controller itself, as the fleet view reports it.
export interface ControllerStatus {
  status: string;
  started_at: number;
  uptime_s: number;
  sessions: number;
  bundle_version: number;
  heartbeat_interval_ms: number;
  trust_domain: string;
}

export interface Fleet {
  now: number;
  window_s: number;
  counts: Record<string, number>;
  renewal_missed: number;
  flapping: number;
  expiring_within_1h: number;
  escalations: Escalation[];
  controller: ControllerStatus;
  nodes: FleetNode[]; // the page asked for
  total: number;
}

// The runbook's counters in the order the runbook reads them; a rise of
// the ones marked is a failure.
export const COUNTERS: { name: string; failure: boolean }[] = [
  { name: "telemetry.reconnect.scheduled", failure: false },
  { name: "telemetry.reconnect.failed", failure: true },
  { name: "telemetry.auth.expired", failure: true },
  { name: "telemetry.auth.revoked", failure: true },
  { name: "telemetry.auth.unavailable", failure: true },
  { name: "renewals.ok", failure: false },
  { name: "renewals.failed", failure: true },
];

// The controller's escalation line (docs/CONTROLLER.md, "Escalation"),
// as one sentence for the Nodes page.
export function escalationText(e: Escalation, windowS: number): string {
  const shown = e.names.slice(0, 10).join(", ");
  const more = e.nodes > e.names.length ? ` and ${e.nodes - e.names.length} more` : "";
  return `${e.nodes} nodes show ${e.failure} within ${Math.round(windowS / 60)} min: ${shown}${more}. Escalate to platform/backend on-call.`;
}

export function byId(fleet: Fleet | null): Map<string, FleetNode> {
  return new Map((fleet?.nodes ?? []).map((n) => [n.id, n]));
}

export const isoTime = (s: number) => (s ? new Date(s * 1000).toISOString().replace(".000Z", "Z") : "-");
