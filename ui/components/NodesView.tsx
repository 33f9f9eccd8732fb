"use client";
import { useEffect, useMemo, useRef, useState } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { byId, escalationText, type Fleet } from "@/lib/fleet";
import { usePoll } from "@/lib/poll";
import {
  PAGE_SIZE,
  clampOffset,
  drainText,
  expiryText,
  lastSeenText,
  pageText,
  relative,
  selectionQuery,
  shownStatus,
  type NodePage,
  type NodeSelection,
  type Shown,
} from "@/lib/nodes";

interface Props {
  initialPage: NodePage | null;
  initialError: ApiError | null;
  initialNow: number;
  pollMs: number;
}

const FLEET_POLL_MS = 5000;
const SEARCH_DELAY_MS = 250;
const STATES: Shown[] = ["ONLINE", "OFFLINE", "EXPIRED", "REVOKED"];
const EMPTY_COUNTS: Record<Shown, number> = { ONLINE: 0, OFFLINE: 0, EXPIRED: 0, REVOKED: 0 };

export default function NodesView({ initialPage, initialError, initialNow, pollMs }: Props) {
  const [page, setPage] = useState<NodePage | null>(initialPage);
  const [error, setError] = useState<ApiError | null>(initialError);
  const [now, setNow] = useState(initialNow);
  const [updated, setUpdated] = useState<number | null>(initialError === null ? initialNow : null);
  const [q, setQ] = useState("");
  const [query, setQuery] = useState(""); // q once typing paused
  const [status, setStatus] = useState("");
  const [role, setRole] = useState("");
  const [offset, setOffset] = useState(0);
  // The fleet view adds reconnects, flapping and the summary; a console in
  // front of an older controller (no /api/admin/fleet) shows the list without them.
  const [fleet, setFleet] = useState<Fleet | null>(null);
  const [fleetError, setFleetError] = useState<ApiError | null>(null);

  const selection: NodeSelection = useMemo(
    () => ({ q: query, state: status, role, offset, limit: PAGE_SIZE }),
    [query, status, role, offset],
  );
  const search = selectionQuery(selection);

  useEffect(() => {
    const t = setTimeout(() => setQuery(q), SEARCH_DELAY_MS);
    return () => clearTimeout(t);
  }, [q]);

  // The page: the controller searches, filters and pages.
  const loadPage = async (live: () => boolean) => {
    const res = await api<NodePage>("GET", `nodes?${search}`);
    if (!live()) return;
    if (res.ok) {
      const at = clampOffset(offset, res.data.total, PAGE_SIZE);
      if (at !== offset) setOffset(at);
      setPage(res.data);
      setError(null);
      setUpdated(Math.floor(Date.now() / 1000));
    } else {
      setError(res.error);
    }
  };
  const pokePage = usePoll(loadPage, pollMs, [pollMs, search]);

  // The fleet view's numbers move over minutes: at start, on a new
  // selection and every FLEET_POLL_MS.
  const loadFleet = async (live: () => boolean) => {
    const fl = await api<Fleet>("GET", `fleet?${search}`);
    if (!live()) return;
    setFleet(fl.ok ? fl.data : null);
    setFleetError(fl.ok ? null : fl.error);
  };
  const pokeFleet = usePoll(loadFleet, FLEET_POLL_MS, [search]);

  // A new selection is fetched at once, not at the next tick.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      pokeFleet();
      return;
    }
    pokePage();
    pokeFleet();
  }, [search, pokePage, pokeFleet]);

  useEffect(() => {
    const t = setInterval(() => setNow(Math.floor(Date.now() / 1000)), 1000);
    return () => clearInterval(t);
  }, []);

  const nodes = page?.nodes ?? [];
  const counts = page?.counts ?? EMPTY_COUNTS;
  const total = page?.total ?? 0;
  const fleetNodes = useMemo(() => byId(fleet), [fleet]);
  const ctl = fleet?.controller;
  const filtered = query.trim() !== "" || status !== "" || role !== "";
  const resetTo = (f: () => void) => {
    f();
    setOffset(0);
  };

  return (
    <section>
      <h1>Nodes</h1>
      <div className="summary" data-testid="fleet-summary">
        <p className="counts" aria-live="polite">
          {STATES.map((s) => (
            <span key={s} className={`count status-${s.toLowerCase()}`} data-testid={`count-${s}`}>
              {s} {counts[s] ?? 0}
            </span>
          ))}
          {fleet !== null && (
            <span className={`count ${fleet.expiring_within_1h > 0 ? "warn" : ""}`} data-testid="expiring-soon">
              expiring within 1 h {fleet.expiring_within_1h}
            </span>
          )}
          {fleet !== null && (
            <span className={`count ${fleet.renewal_missed > 0 ? "warn" : ""}`} data-testid="renewal-missed">
              renewal missed {fleet.renewal_missed}
            </span>
          )}
          {fleet !== null && (
            <span className={`count ${fleet.flapping > 0 ? "warn" : ""}`} data-testid="flapping-count">
              flapping {fleet.flapping}
            </span>
          )}
          <span className="updated">
            {updated === null ? "not updated yet" : `updated ${now - updated <= 1 ? "just now" : `${now - updated} s ago`}`}
            {` · every ${pollMs / 1000} s`}
          </span>
        </p>
        <p className="controller-health" data-testid="controller-health">
          {ctl !== undefined ? (
            <>
              Controller <span className="status status-online" data-controller-status={ctl.status}>{ctl.status.toUpperCase()}</span>
              {` · up ${relative(ctl.uptime_s)} · ${ctl.sessions} control sessions · bundle version ${ctl.bundle_version} · trust domain ${ctl.trust_domain} · heartbeat every ${ctl.heartbeat_interval_ms / 1000} s`}
            </>
          ) : error !== null || fleetError !== null ? (
            <>
              Controller <span className="status status-offline" data-controller-status="unreachable">UNREACHABLE</span>
              {` · ${(error ?? fleetError)?.text ?? ""}`}
            </>
          ) : (
            "Controller: asking…"
          )}
        </p>
      </div>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/nodes" />}
      {fleet !== null && fleet.escalations.length > 0 && (
        <div className="error-panel" role="alert" data-testid="escalations">
          {fleet.escalations.map((e) => (
            <p key={e.failure}>{escalationText(e, fleet.window_s)}</p>
          ))}
        </div>
      )}
      <div className="filters" role="search">
        <label>
          Search{" "}
          <input type="search" value={q} onChange={(e) => resetTo(() => setQ(e.target.value))} placeholder="name, id, SPIFFE ID, address" maxLength={128} />
        </label>
        <label>
          Status{" "}
          <select value={status} onChange={(e) => resetTo(() => setStatus(e.target.value))}>
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
          <select value={role} onChange={(e) => resetTo(() => setRole(e.target.value))}>
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
          {nodes.map((n) => {
            const shown = shownStatus(n, now);
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
                  {drainText(n, now) !== null && (
                    <span className="warn" data-drain={n.drain?.by}>
                      {" "}
                      {drainText(n, now)}
                    </span>
                  )}
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
          {nodes.length === 0 && (
            <tr>
              <td colSpan={8}>{!filtered && total === 0 ? "No node has enrolled yet." : "No node matches the filter."}</td>
            </tr>
          )}
        </tbody>
      </table>
      <nav className="pager" aria-label="Pages of nodes">
        <button type="button" onClick={() => setOffset(Math.max(0, offset - PAGE_SIZE))} disabled={offset === 0}>
          Previous
        </button>
        <span data-testid="page-text" aria-live="polite">
          {pageText(offset, nodes.length, total)}
        </span>
        <button type="button" onClick={() => setOffset(offset + PAGE_SIZE)} disabled={offset + PAGE_SIZE >= total}>
          Next
        </button>
      </nav>
    </section>
  );
}
