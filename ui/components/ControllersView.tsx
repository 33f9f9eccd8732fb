"use client";
import { useCallback, useEffect, useState } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { isoTime } from "@/lib/fleet";

// A controller on the store (docs/CONTROLLER.md, GET /api/admin/controllers).
interface Controller {
  id: string;
  address: string;
  started_at: number;
  last_seen: number; // 0: stopped cleanly
  alive: boolean;
  self: boolean;
  nodes_online: number;
}

const POLL_MS = 2000;

export default function ControllersView() {
  const [rows, setRows] = useState<Controller[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);

  const load = useCallback(async () => {
    const r = await api<{ controllers: Controller[] }>("GET", "controllers");
    if (r.ok) {
      setRows(r.data.controllers);
      setError(null);
    } else setError(r.error);
  }, []);
  // A controller that stops beating turns "not answering" within seconds.
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      await load();
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [load]);

  const alive = rows?.filter((r) => r.alive).length ?? 0;
  return (
    <section>
      <h1>Controllers</h1>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/controllers" />}
      {rows !== null && (
        <>
          <p data-testid="controllers-summary">
            {alive} of {rows.length} controller{rows.length === 1 ? "" : "s"} answering. Every one serves enrollment,
            control sessions, renewal and this API; a node is held by the controller its session is on.
          </p>
          <table className="controllers">
            <caption className="sr-only">Controllers sharing the store</caption>
            <thead>
              <tr>
                <th scope="col">Controller</th>
                <th scope="col">Address</th>
                <th scope="col">State</th>
                <th scope="col">Nodes online</th>
                <th scope="col">Started</th>
                <th scope="col">Last seen</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} data-controller={r.address} data-alive={r.alive ? "true" : "false"}>
                  <td>
                    <code>{r.id}</code>
                    {r.self ? " (this one)" : ""}
                  </td>
                  <td>{r.address}</td>
                  <td>{r.alive ? "answering" : r.last_seen === 0 ? <strong>stopped</strong> : <strong>not answering</strong>}</td>
                  <td>{r.nodes_online}</td>
                  <td>{isoTime(r.started_at)}</td>
                  <td>{r.last_seen ? isoTime(r.last_seen) : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
