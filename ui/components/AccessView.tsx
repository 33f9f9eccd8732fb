"use client";
import { useCallback, useEffect, useState } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import ExplainPanel from "@/components/ExplainPanel";
import { api, type ApiError } from "@/lib/client";
import { useHydrated } from "@/lib/hydrated";
import type { Node } from "@/lib/nodes";

interface Resource {
  name: string;
  description: string;
  connectors: string[];
}
interface Grant {
  tunneler: string;
  resource: string;
}

export default function AccessView() {
  const hydrated = useHydrated();
  const [resources, setResources] = useState<Resource[]>([]);
  const [grants, setGrants] = useState<Grant[]>([]);
  const [version, setVersion] = useState(0);
  const [tunnelers, setTunnelers] = useState<string[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState("");
  const [said, setSaid] = useState("");

  const load = useCallback(async () => {
    const [r, a, n] = await Promise.all([
      api<{ resources: Resource[] }>("GET", "resources"),
      api<{ version: number; grants: Grant[] }>("GET", "allowlist"),
      api<{ nodes: Node[] }>("GET", "nodes"),
    ]);
    const failed = [r, a, n].find((x) => !x.ok);
    if (failed !== undefined && !failed.ok) {
      setError(failed.error);
      return;
    }
    if (!r.ok || !a.ok || !n.ok) return;
    setError(null);
    setResources(r.data.resources);
    setGrants(a.data.grants);
    setVersion(a.data.version);
    // Tunnelers that enrolled, and names granted before they enrolled.
    const names = new Set(n.data.nodes.filter((x) => x.role === "tunneler" && !x.revoked).map((x) => x.name));
    for (const g of a.data.grants) names.add(g.tunneler);
    setTunnelers([...names].sort());
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const allowed = (t: string, r: string) => grants.some((g) => g.tunneler === t && g.resource === r);
  const toggle = async (t: string, r: string) => {
    const on = allowed(t, r);
    setBusy(`${t}|${r}`);
    const res = await api<{ version: number }>(on ? "DELETE" : "POST", "allowlist", { tunneler: t, resource: r });
    setBusy("");
    if (!res.ok) {
      setError(res.error);
      return;
    }
    setSaid(`${on ? "Denied" : "Allowed"} ${t} → ${r} (allowlist version ${res.data.version}; recorded as an admin event)`);
    await load();
  };

  return (
    <section>
      <h1>Resources and access</h1>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/resources, allowlist" />}
      <p className="muted" role="status" data-testid="access-status">
        {said || `Allowlist version ${version}. A cell allows or denies one tunneler one resource; connectors get the change at once.`}
      </p>
      <h2>Grants</h2>
      {resources.length === 0 ? (
        <p>No resource yet (controller resource add NAME --connector CONNECTOR).</p>
      ) : (
        <table className="matrix">
          <caption className="sr-only">Tunneler by resource: allowed or denied</caption>
          <thead>
            <tr>
              <th scope="col">Tunneler</th>
              {resources.map((r) => (
                <th scope="col" key={r.name}>
                  {r.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {tunnelers.map((t) => (
              <tr key={t} data-tunneler={t}>
                <th scope="row">{t}</th>
                {resources.map((r) => {
                  const on = allowed(t, r.name);
                  return (
                    <td key={r.name}>
                      <button
                        type="button"
                        className={on ? "grant on" : "grant off"}
                        aria-pressed={on}
                        aria-label={`${t} to ${r.name}: ${on ? "allowed, click to deny" : "denied, click to allow"}`}
                        data-grant={`${t}|${r.name}`}
                        disabled={!hydrated || busy === `${t}|${r.name}`}
                        onClick={() => void toggle(t, r.name)}
                      >
                        {on ? "allowed" : "denied"}
                      </button>
                    </td>
                  );
                })}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Resources</h2>
      <table>
        <caption className="sr-only">Resources and the connectors bound to them</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Description</th>
            <th scope="col">Connectors</th>
          </tr>
        </thead>
        <tbody>
          {resources.map((r) => (
            <tr key={r.name} data-resource={r.name}>
              <td>{r.name}</td>
              <td>{r.description || "-"}</td>
              <td>{r.connectors.join(", ") || "none"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <ExplainPanel tunnelers={tunnelers} resources={resources.map((r) => r.name)} />
    </section>
  );
}
