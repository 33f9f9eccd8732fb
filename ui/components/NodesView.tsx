"use client";
import { useEffect, useMemo, useState } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { byId, escalationText, type Fleet } from "@/lib/fleet";
import { expiryText, lastSeenText, matchesFilter, shownStatus, type Node, type Shown } from "@/lib/nodes";

interface Props {
  initialNodes: Node[];
  initialError: ApiError | null;
  initialNow: number;
  pollMs: number;
}

const FLEET_POLL_MS = 5000;
const STATES: Shown[] = ["ONLINE", "OFFLINE", "EXPIRED", "REVOKED"];

export default function NodesView({ initialNodes, initialError, initialNow, pollMs }: Props) {
  const [nodes, setNodes] = useState<Node[]>(initialNodes);
  const [error, setError] = useState<ApiError | null>(initialError);
  const [now, setNow] = useState(initialNow);
  const [updated, setUpdated] = useState<number | null>(initialError === null ? initialNow : null);
  const [q, setQ] = useState("");
  const [status, setStatus] = useState("");
  const [role, setRole] = useState("");
  // The fleet view adds reconnects and flapping; a console in front of an
  // older controller (no /api/admin/fleet) shows the list without them.
  const [fleet, setFleet] = useState<Fleet | null>(null);

  // Poll the node list; a slow answer delays the next poll instead of
  // stacking requests.
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      const res = await api<{ nodes: Node[] }>("GET", "nodes");
      if (stopped) return;
      if (res.ok) {
        setNodes(res.data.nodes);
        setError(null);
        setUpdated(Math.floor(Date.now() / 1000));
      } else {
        setError(res.error);
      }
      timer = setTimeout(tick, pollMs);
    };
    timer = setTimeout(tick, pollMs);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [pollMs]);

  // The fleet view is as large as the node list again and its numbers move
  // over minutes: read it at start and every FLEET_POLL_MS.
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      const fl = await api<Fleet>("GET", "fleet");
      if (stopped) return;
      setFleet(fl.ok ? fl.data : null);
      timer = setTimeout(tick, FLEET_POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);

  useEffect(() => {
    const t = setInterval(() => setNow(Math.floor(Date.now() / 1000)), 1000);
    return () => clearInterval(t);
  }, []);

  const rows = useMemo(
    () =>
      nodes
        .map((n) => ({ n, shown: shownStatus(n, now) }))
        .filter(({ n, shown }) => matchesFilter(n, shown, q.trim(), status, role)),
    [nodes, now, q, status, role],
  );
  const counts = useMemo(() => {
    const c: Record<Shown, number> = { ONLINE: 0, OFFLINE: 0, EXPIRED: 0, REVOKED: 0 };
    for (const n of nodes) c[shownStatus(n, now)]++;
    return c;
  }, [nodes, now]);
  // Live certificates that end within the hour (with the default 24 h SVIDs
  // renewed at half-life, a healthy node never gets there), and nodes past their renewal time.
  const expiringSoon = nodes.filter((n) => !n.revoked && n.cert_not_after > now && n.cert_not_after - now < 3600).length;
  const overdue = nodes.filter((n) => n.renewal_overdue).length;
  const fleetNodes = useMemo(() => byId(fleet), [fleet]);

  return (
    <section>
      <h1>Nodes</h1>
      <p className="counts" aria-live="polite">
        {STATES.map((s) => (
          <span key={s} className={`count status-${s.toLowerCase()}`}>
            {s} {counts[s]}
          </span>
        ))}
        <span className={`count ${expiringSoon > 0 ? "warn" : ""}`} data-testid="expiring-soon">
          expiring within 1 h {expiringSoon}
        </span>
        <span className={`count ${overdue > 0 ? "warn" : ""}`} data-testid="renewal-overdue">
          renewal overdue {overdue}
        </span>
        {fleet !== null && (
          <span className={`count ${fleet.flapping > 0 ? "warn" : ""}`} data-testid="flapping-count">
            flapping {fleet.flapping}
          </span>
        )}
        {fleet !== null && (
          <span className={`count ${fleet.renewal_missed > 0 ? "warn" : ""}`} data-testid="renewal-missed">
            renewal missed {fleet.renewal_missed}
          </span>
        )}
        <span className="updated">
          {updated === null ? "not updated yet" : `updated ${now - updated <= 1 ? "just now" : `${now - updated} s ago`}`}
          {` · every ${pollMs / 1000} s`}
        </span>
      </p>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/nodes" />}
      {fleet !== null && fleet.escalations.length > 0 && (
        <div className="error-panel" role="alert" data-testid="escalations">
          {fleet.escalations.map((e) => (
            <p key={e.failure}>
              {escalationText(e, fleet.window_s)}
            </p>
          ))}
        </div>
      )}
      <div className="filters" role="search">
        <label>
          Search <input type="search" value={q} onChange={(e) => setQ(e.target.value)} placeholder="name, id, SPIFFE ID, address" />
        </label>
        <label>
          Status{" "}
          <select value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">any</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Role{" "}
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            <option value="">any</option>
            <option value="connector">connector</option>
            <option value="tunneler">tunneler</option>
          </select>
        </label>
      </div>
      <table className="nodes">
        <caption className="sr-only">Connectors and tunnelers</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Status</th>
            <th scope="col">Last seen</th>
            <th scope="col">Certificate expires</th>
            <th scope="col">Reconnects 5 min</th>
            <th scope="col">Addresses</th>
            <th scope="col">ID</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ n, shown }) => {
            const f = fleetNodes.get(n.id);
            return (
            <tr key={n.id} data-node-name={n.name} data-node-id={n.id}>
              <td>
                <a href={`/nodes/${encodeURIComponent(n.id)}`}>{n.name}</a>
              </td>
              <td>{n.role}</td>
              <td>
                <span className={`status status-${shown.toLowerCase()}`} data-status={shown}>
                  {shown}
                </span>
              </td>
              <td>{lastSeenText(n, now)}</td>
              <td>
                {expiryText(n, now)}
                {n.renewal_overdue && <span className="warn"> (renewal overdue)</span>}
              </td>
              <td data-testid="reconnects">
                {f === undefined ? "-" : f.reconnects_5m}
                {f?.flapping && (
                  <span className="warn flap" data-flapping="true">
                    {" "}
                    flapping
                  </span>
                )}
              </td>
              <td>{(n.addresses ?? []).join(", ") || "-"}</td>
              <td>
                <code>{n.id}</code>
              </td>
            </tr>
            );
          })}
          {rows.length === 0 && (
            <tr>
              <td colSpan={8}>{nodes.length === 0 ? "No node has enrolled yet." : "No node matches the filter."}</td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}
