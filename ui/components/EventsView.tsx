"use client";
import { useEffect, useRef, useState } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { KINDS, NO_FILTER, PAGE_SIZES, pageQuery, type AdminEvent, type EventFilter, type Field } from "@/lib/events";
import { loadEvents } from "@/lib/events-client";
import { isoTime } from "@/lib/fleet";
import { useHydrated } from "@/lib/hydrated";
import type { Node } from "@/lib/nodes";

interface Props {
  initialFilter: EventFilter;
  initialSize: number;
}

export default function EventsView({ initialFilter, initialSize }: Props) {
  const hydrated = useHydrated();
  const [nodes, setNodes] = useState<Node[]>([]);
  const [filter, setFilter] = useState<EventFilter>(initialFilter);
  const [size, setSize] = useState(initialSize);
  // cursors[i]: the `before` of page i (null: the newest); the last is shown.
  const [cursors, setCursors] = useState<(number | null)[]>([null]);
  // Bumped by Newest on the first page: the same query, read again.
  const [reread, setReread] = useState(0);
  const [events, setEvents] = useState<AdminEvent[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [invalid, setInvalid] = useState<{ field: Field; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  // Only the answer to the latest request is shown, whatever order they come back in.
  const latest = useRef(0);

  useEffect(() => {
    void api<{ nodes: Node[] }>("GET", "nodes").then((r) => {
      if (r.ok) setNodes(r.data.nodes);
    });
  }, []);

  const cursor = cursors[cursors.length - 1] ?? null;
  useEffect(() => {
    const mine = ++latest.current;
    setBusy(true);
    void loadEvents(filter, cursor, size).then((r) => {
      if (mine !== latest.current) return;
      setBusy(false);
      if (!r.ok && "invalid" in r) {
        setInvalid(r.invalid);
        setError(null);
        setEvents(null);
        setNext(null);
        return;
      }
      setInvalid(null);
      if (!r.ok) {
        setError(r.error);
        return;
      }
      setError(null);
      setEvents(r.data.events);
      setNext(r.data.before);
    });
  }, [filter, size, cursor, reread]);

  // The address bar keeps the filter, so the page can be reloaded or linked.
  useEffect(() => {
    const want = `/events${pageQuery(filter, size)}`;
    if (window.location.pathname + window.location.search !== want) window.history.replaceState(null, "", want);
  }, [filter, size]);

  // A new filter starts again from the newest.
  const refilter = (change: Partial<EventFilter>) => {
    setFilter((f) => ({ ...f, ...change }));
    setCursors([null]);
  };
  const names = new Map(nodes.map((n) => [n.id, `${n.role} ${n.name}`]));
  // Marks the control a refused filter is about, and points it at the message.
  const marks = (...fields: Field[]) =>
    invalid !== null && fields.includes(invalid.field) ? { "aria-invalid": true, "aria-describedby": "filter-invalid" } : {};

  return (
    <section>
      <h1>Events</h1>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/events" />}
      <div className="filters" role="search" aria-label="Filter the events">
        <label>
          Node{" "}
          <select value={filter.node} onChange={(e) => refilter({ node: e.target.value })} {...marks("node")}>
            <option value="">any</option>
            {nodes.map((n) => (
              <option key={n.id} value={n.id}>
                {n.role} {n.name}
              </option>
            ))}
            {filter.node !== "" && !names.has(filter.node) && <option value={filter.node}>{filter.node}</option>}
          </select>
        </label>
        <label>
          Kind{" "}
          <select value={filter.kind} onChange={(e) => refilter({ kind: e.target.value })} {...marks("kind")}>
            <option value="">any</option>
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
            {filter.kind !== "" && !KINDS.includes(filter.kind) && <option value={filter.kind}>{filter.kind}</option>}
          </select>
        </label>
        <label>
          From (UTC){" "}
          <input
            type="datetime-local"
            step={1}
            value={filter.since}
            onChange={(e) => refilter({ since: e.target.value })}
            {...marks("since", "range")}
          />
        </label>
        <label>
          To (UTC){" "}
          <input
            type="datetime-local"
            step={1}
            value={filter.until}
            onChange={(e) => refilter({ until: e.target.value })}
            {...marks("until", "range")}
          />
        </label>
        <label>
          Per page{" "}
          <select
            value={size}
            onChange={(e) => {
              setSize(Number(e.target.value));
              setCursors([null]);
            }}
          >
            {PAGE_SIZES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <button type="button" disabled={!hydrated || busy} onClick={() => (cursors.length === 1 ? setReread((n) => n + 1) : setCursors([null]))}>
          Newest
        </button>
        <button type="button" disabled={!hydrated} onClick={() => refilter(NO_FILTER)}>
          Clear filters
        </button>
      </div>
      {invalid !== null && (
        <p className="error" role="alert" id="filter-invalid" data-testid="filter-invalid">
          {invalid.message} Nothing was asked of the controller.
        </p>
      )}
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
        <span className="muted" data-testid="page-info" aria-live="polite">
          page {cursors.length}
          {events === null ? "" : ` · ${events.length} shown${next === null ? ", none older" : ""}`}
        </span>
        <button type="button" disabled={!hydrated || busy || next === null} onClick={() => setCursors([...cursors, next])}>
          Older →
        </button>
      </nav>
    </section>
  );
}
