"use client";
import { useCallback, useEffect, useState } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import type { AdminEvent } from "@/lib/events";
import { loadEvents } from "@/lib/events-client";
import { isoTime } from "@/lib/fleet";
import { useHydrated } from "@/lib/hydrated";
import type { Node } from "@/lib/nodes";

// What the controller records (docs/CONTROLLER.md, "events").
const KINDS = ["admin", "alert", "denied", "enrolled", "reauthenticated", "renewed", "revoked", "security", "status"];
const SIZES = [5, 20, 50, 200];

// A datetime-local value read as UTC, as the table shows times (0: none).
function utcSeconds(v: string): number {
  const ms = Date.parse(`${v}Z`);
  return v === "" || Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

export default function EventsView({ initialNode, initialKind }: { initialNode: string; initialKind: string }) {
  const hydrated = useHydrated();
  const [nodes, setNodes] = useState<Node[]>([]);
  const [node, setNode] = useState(initialNode);
  const [kind, setKind] = useState(initialKind);
  const [size, setSize] = useState(50);
  const [since, setSince] = useState("");
  const [until, setUntil] = useState("");
  // cursors[i]: the `before` of page i (null: the newest); the last is shown.
  const [cursors, setCursors] = useState<(number | null)[]>([null]);
  const [events, setEvents] = useState<AdminEvent[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [scanned, setScanned] = useState(0);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    void api<{ nodes: Node[] }>("GET", "nodes").then((r) => {
      if (r.ok) setNodes(r.data.nodes);
    });
  }, []);

  const cursor = cursors[cursors.length - 1] ?? null;
  const load = useCallback(async () => {
    setBusy(true);
    const r = await loadEvents({ node_id: node, kind, since: utcSeconds(since), until: utcSeconds(until) }, cursor, size);
    setBusy(false);
    if (!r.ok) {
      setError(r.error);
      return;
    }
    setError(null);
    setEvents(r.data.events);
    setNext(r.data.before);
    setScanned(r.data.scanned);
  }, [node, kind, size, since, until, cursor]);
  useEffect(() => {
    void load();
  }, [load]);

  // A new filter starts again from the newest.
  const refilter = (f: () => void) => {
    f();
    setCursors([null]);
  };
  const names = new Map(nodes.map((n) => [n.id, `${n.role} ${n.name}`]));

  return (
    <section>
      <h1>Events</h1>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/events" />}
      <div className="filters" role="search">
        <label>
          Node{" "}
          <select value={node} onChange={(e) => refilter(() => setNode(e.target.value))}>
            <option value="">any</option>
            {nodes.map((n) => (
              <option key={n.id} value={n.id}>
                {n.role} {n.name}
              </option>
            ))}
            {node !== "" && !names.has(node) && <option value={node}>{node}</option>}
          </select>
        </label>
        <label>
          Kind{" "}
          <select value={kind} onChange={(e) => refilter(() => setKind(e.target.value))}>
            <option value="">any</option>
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
        <label>
          From (UTC){" "}
          <input type="datetime-local" step={1} value={since} onChange={(e) => refilter(() => setSince(e.target.value))} />
        </label>
        <label>
          To (UTC){" "}
          <input type="datetime-local" step={1} value={until} onChange={(e) => refilter(() => setUntil(e.target.value))} />
        </label>
        <label>
          Per page{" "}
          <select value={size} onChange={(e) => refilter(() => setSize(Number(e.target.value)))}>
            {SIZES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <button type="button" disabled={!hydrated || busy} onClick={() => (cursors.length === 1 ? void load() : setCursors([null]))}>
          Newest
        </button>
      </div>
      <table className="events">
        <caption className="sr-only">Events, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Kind</th>
            <th scope="col">Node</th>
            <th scope="col">Detail</th>
            <th scope="col">ID</th>
          </tr>
        </thead>
        <tbody>
          {(events ?? []).map((e) => (
            <tr key={e.id} data-event-id={e.id} data-event-kind={e.kind}>
              <td>
                <time dateTime={new Date(e.at * 1000).toISOString()}>{isoTime(e.at)}</time>
              </td>
              <td>{e.kind}</td>
              <td>{e.node_id === "" ? "-" : <a href={`/nodes/${encodeURIComponent(e.node_id)}`}>{names.get(e.node_id) ?? e.node_id}</a>}</td>
              <td data-testid="detail">{e.detail}</td>
              <td>{e.id}</td>
            </tr>
          ))}
          {events !== null && events.length === 0 && (
            <tr>
              <td colSpan={5}>No event matches.</td>
            </tr>
          )}
        </tbody>
      </table>
      <nav className="pager" aria-label="Pages">
        <button type="button" disabled={!hydrated || busy || cursors.length === 1} onClick={() => setCursors(cursors.slice(0, -1))}>
          ← Newer
        </button>
        <span className="muted" data-testid="page-info">
          page {cursors.length}
          {events === null ? "" : ` · ${events.length} shown, ${scanned} read`}
        </span>
        <button type="button" disabled={!hydrated || busy || next === null} onClick={() => setCursors([...cursors, next])}>
          Older →
        </button>
      </nav>
    </section>
  );
}
