"use client";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { DEFAULT_PAGE_SIZE, NO_FILTER, pageQuery, type EventPage } from "@/lib/events";
import { loadEvents as loadPage } from "@/lib/events-client";
import { COUNTERS, isoTime, type Fleet, type FleetNode } from "@/lib/fleet";
import { useHydrated } from "@/lib/hydrated";
import { drainText, expiryText, lastSeenText, shownStatus, type Node } from "@/lib/nodes";

interface Props {
  id: string;
  pollMs: number;
}

const FLEET_POLL_MS = 5000;

// The timeline: the node's newest events (node=ID&order=desc, one call);
// the Events page has the rest.
const TIMELINE = 50;

// deltas_5m covers less than 5 minutes while the controller has followed
// the node for less.
const windowText = (s: number) => (s < 120 ? `${s} s` : `${Math.round(s / 60)} min`);

export default function NodeDetail({ id, pollMs }: Props) {
  const hydrated = useHydrated();
  const [node, setNode] = useState<Node | null>(null);
  const [fleet, setFleet] = useState<FleetNode | null>(null);
  const [windowS, setWindowS] = useState(300);
  const [timeline, setTimeline] = useState<EventPage | null>(null);
  const [error, setError] = useState<{ what: string; e: ApiError } | null>(null);
  const [now, setNow] = useState(() => Math.floor(Date.now() / 1000));
  const [confirming, setConfirming] = useState(false);
  const [reason, setReason] = useState("");
  const [typed, setTyped] = useState("");
  const [done, setDone] = useState("");

  const loadEvents = useCallback(async () => {
    const res = await loadPage({ ...NO_FILTER, node: id }, null, TIMELINE);
    if (res.ok) setTimeline(res.data);
    else if ("invalid" in res) setError({ what: "/api/admin/events", e: { status: 400, text: res.invalid.message } });
    else setError({ what: "/api/admin/events", e: res.error });
  }, [id]);

  // The node and its fleet row every poll; the timeline on open, after a
  // change and on Refresh.
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let lastFleet = 0;
    const tick = async () => {
      // The fleet row moves over minutes: read it every FLEET_POLL_MS,
      // searched by id (the controller returns that row, not the fleet).
      const wantFleet = Date.now() - lastFleet >= FLEET_POLL_MS;
      const [n, f] = await Promise.all([
        api<Node>("GET", `nodes/${encodeURIComponent(id)}`),
        wantFleet ? api<Fleet>("GET", `fleet?${new URLSearchParams({ q: id, limit: "10" })}`) : Promise.resolve(null),
      ]);
      if (stopped) return;
      if (!n.ok) setError({ what: `/api/admin/nodes/${id}`, e: n.error });
      else if (f !== null && !f.ok) setError({ what: "/api/admin/fleet", e: f.error });
      else {
        setNode(n.data);
        if (f !== null) {
          lastFleet = Date.now();
          setFleet(f.data.nodes.find((x) => x.id === id) ?? null);
          setWindowS(f.data.window_s);
        }
        setError(null);
      }
      setNow(Math.floor(Date.now() / 1000));
      timer = setTimeout(tick, pollMs);
    };
    void tick();
    void loadEvents();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [id, pollMs, loadEvents]);

  const revoke = async (e: FormEvent) => {
    e.preventDefault();
    if (node === null || typed !== node.name) return;
    const body = reason.trim() === "" ? {} : { reason: reason.trim() };
    const res = await api<{ reason: string }>("POST", `nodes/${encodeURIComponent(id)}/revoke`, body);
    if (!res.ok) {
      setError({ what: `/api/admin/nodes/${id}/revoke`, e: res.error });
      return;
    }
    setConfirming(false);
    setTyped("");
    setDone(`Revoked ${node.role} ${node.name}: its certificates are refused from now on.`);
    const n = await api<Node>("GET", `nodes/${encodeURIComponent(id)}`);
    if (n.ok) setNode(n.data);
    await loadEvents();
  };

  const shown = node === null ? null : shownStatus(node, now);
  return (
    <section>
      <p>
        <a href="/">← Nodes</a>
      </p>
      <h1>{node === null ? `Node ${id}` : `${node.role} ${node.name}`}</h1>
      {error !== null && <ErrorPanel status={error.e.status} text={error.e.text} what={error.what} />}
      {node !== null && shown !== null && (
        <>
          <dl className="facts" data-testid="identity">
            <dt>Status</dt>
            <dd>
              <span className={`status status-${shown.toLowerCase()}`} data-status={shown}>
                {shown}
              </span>
              {drainText(node, now) !== null && (
                <span className="warn" data-testid="drain" data-drain={node.drain?.by}>
                  {" "}
                  {drainText(node, now)}
                </span>
              )}
              {fleet?.flapping && (
                <span className="warn flap" data-testid="flapping">
                  {" "}
                  flapping ({fleet.reconnects_5m} reconnects in 5 min)
                </span>
              )}
            </dd>
            <dt>SPIFFE ID</dt>
            <dd>
              <code>{node.spiffe_id}</code>
            </dd>
            <dt>ID</dt>
            <dd>
              <code>{node.id}</code>
            </dd>
            <dt>Certificate serial</dt>
            <dd>
              <code data-testid="serial">{node.cert_serial}</code>
            </dd>
            <dt>not_after</dt>
            <dd data-testid="not-after">
              {isoTime(node.cert_not_after)} ({expiryText(node, now)})
            </dd>
            <dt>renew_at</dt>
            <dd data-testid="renew-at">
              {fleet === null ? "-" : isoTime(fleet.renew_at)}
              {fleet?.renewal_missed && <span className="warn"> (renewal missed)</span>}
            </dd>
            <dt>Trust bundle</dt>
            <dd data-testid="bundle-held">
              {fleet === null || fleet.bundle_version === null ? "not reported yet" : `version ${fleet.bundle_version}`}
            </dd>
            <dt>Last renewal</dt>
            <dd>{fleet === null || !fleet.last_renewed_at ? "-" : isoTime(fleet.last_renewed_at)}</dd>
            <dt>Last seen</dt>
            <dd>{lastSeenText(node, now)}</dd>
            <dt>Enrolled</dt>
            <dd>{isoTime(node.enrolled_at)}</dd>
            <dt>Addresses</dt>
            <dd>{(node.addresses ?? []).join(", ") || "-"}</dd>
          </dl>

          <h2>Runbook counters</h2>
          {fleet === null || fleet.counters === null ? (
            <p className="muted">No heartbeat has reported counters yet.</p>
          ) : (
            <table className="counters">
              <caption className="sr-only">Counters and their rise over the last {windowS / 60} minutes</caption>
              <thead>
                <tr>
                  <th scope="col">Counter</th>
                  <th scope="col">Value</th>
                  <th scope="col">Rise, last {windowText(fleet.deltas_window_s || windowS)}</th>
                </tr>
              </thead>
              <tbody>
                {COUNTERS.map(({ name, failure }) => {
                  const d = fleet.deltas_5m?.[name];
                  // Said in words too: orange alone is no signal to everyone.
                  const failing = failure && (d ?? 0) > 0;
                  return (
                    <tr key={name} data-counter={name}>
                      <th scope="row">
                        <code>{name}</code>
                      </th>
                      <td data-testid="value">{fleet.counters?.[name] ?? "-"}</td>
                      <td data-testid="delta" className={failing ? "warn" : ""}>
                        {d === undefined ? "-" : `+${d}`}
                        {failing && " failing"}
                      </td>
                    </tr>
                  );
                })}
                <tr data-counter="reconnects_5m">
                  <th scope="row">reconnects (controller)</th>
                  <td>-</td>
                  <td data-testid="delta" className={fleet.flapping ? "warn" : ""}>
                    +{fleet.reconnects_5m}
                    {fleet.flapping && " flapping"}
                  </td>
                </tr>
              </tbody>
            </table>
          )}
          {fleet !== null && fleet.counters_at > 0 && <p className="muted">reported {lastSeenText({ ...node, last_seen: fleet.counters_at }, now)}</p>}

          <h2>Revoke</h2>
          {done !== "" && (
            <p role="status" data-testid="revoke-status">
              {done}
            </p>
          )}
          {node.revoked ? (
            <p>This node is revoked.</p>
          ) : !confirming ? (
            <button type="button" className="danger" disabled={!hydrated} onClick={() => setConfirming(true)}>
              Revoke…
            </button>
          ) : (
            <form onSubmit={revoke} className="confirm" aria-label="Confirm revocation">
              <p>
                Revoking ends every session of <strong>{node.name}</strong> and refuses its certificates; there is no
                undo. Type the node&apos;s name to confirm.
              </p>
              <div className="inline-form">
                <label>
                  Reason <input value={reason} onChange={(e) => setReason(e.target.value)} maxLength={200} />
                </label>
                <label>
                  Node name <input value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" />
                </label>
                <button type="submit" className="danger" disabled={typed !== node.name}>
                  Revoke {node.name}
                </button>
                <button type="button" onClick={() => { setConfirming(false); setTyped(""); }}>
                  Cancel
                </button>
              </div>
            </form>
          )}
        </>
      )}

      <h2 id="timeline-heading">Events</h2>
      {timeline === null ? (
        <p className="muted" role="status">
          loading…
        </p>
      ) : (
        <>
          <p className="muted">
            <span role="status" data-testid="timeline-info">
              {timeline.events.length === 0
                ? "No event for this node."
                : `The node's ${timeline.events.length} newest events${timeline.before !== null ? "" : " (all it has)"}.`}
            </span>{" "}
            <a href={`/events${pageQuery({ ...NO_FILTER, node: id }, DEFAULT_PAGE_SIZE)}`}>
              {timeline.before !== null ? "All of its events" : "Its events"} on the Events page
            </a>{" "}
            <button type="button" onClick={() => void loadEvents()} disabled={!hydrated}>
              Refresh
            </button>
          </p>
          <ol className="timeline" data-testid="timeline" aria-labelledby="timeline-heading">
            {timeline.events.map((e) => (
              <li key={e.id} data-event-kind={e.kind}>
                <time dateTime={new Date(e.at * 1000).toISOString()}>{isoTime(e.at)}</time> <strong>{e.kind}</strong> {e.detail}
              </li>
            ))}
          </ol>
        </>
      )}
    </section>
  );
}
