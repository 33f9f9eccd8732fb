"use client";
// The Access page's "Explain" panel: GET /api/admin/explain for one tunneler
// and one resource (and, optionally, one connector asked over its control
// stream), shown step by step with the verdict and the first failing step.
import { useState, type FormEvent } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { useHydrated } from "@/lib/hydrated";

export interface ExplainStep {
  step: string;
  ok: boolean;
  detail: string;
}
export interface ExplainResult {
  tunneler: string;
  resource: string;
  verdict: "allow" | "deny";
  first_failure: { step: string; detail: string } | null;
  steps: ExplainStep[];
  allowlist_version: number;
}

export function explainPath(tunneler: string, resource: string, connector: string): string {
  const q = new URLSearchParams({ tunneler, resource });
  if (connector !== "") q.set("connector", connector);
  return `explain?${q.toString()}`;
}

export default function ExplainPanel({ tunnelers, resources }: { tunnelers: string[]; resources: string[] }) {
  const hydrated = useHydrated();
  const [tunneler, setTunneler] = useState("");
  const [resource, setResource] = useState("");
  const [connector, setConnector] = useState("");
  const [result, setResult] = useState<ExplainResult | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const explain = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    const res = await api<ExplainResult>("GET", explainPath(tunneler.trim(), resource.trim(), connector.trim()));
    setBusy(false);
    if (!res.ok) {
      setError(res.error);
      setResult(null);
      return;
    }
    setError(null);
    setResult(res.data);
  };

  return (
    <section aria-labelledby="explain-heading">
      <h2 id="explain-heading">Explain</h2>
      <p className="hint">Why a tunneler may or may not reach a resource, step by step, from what the controller holds now.</p>
      <form onSubmit={explain} aria-label="Explain access">
        <fieldset className="inline-form" disabled={!hydrated || busy}>
          <legend className="sr-only">Explain one tunneler and one resource</legend>
          <label>
            Tunneler{" "}
            <input
              value={tunneler}
              onChange={(e) => setTunneler(e.target.value)}
              list="explain-tunnelers"
              placeholder="laptop or laptop@other.org"
              required
              maxLength={300}
            />
          </label>
          <datalist id="explain-tunnelers">
            {tunnelers.map((t) => (
              <option key={t} value={t} />
            ))}
          </datalist>
          <label>
            Resource{" "}
            <input value={resource} onChange={(e) => setResource(e.target.value)} list="explain-resources" required maxLength={128} />
          </label>
          <datalist id="explain-resources">
            {resources.map((r) => (
              <option key={r} value={r} />
            ))}
          </datalist>
          <label>
            Ask connector (optional){" "}
            <input value={connector} onChange={(e) => setConnector(e.target.value)} maxLength={128} />
          </label>
          <button type="submit">{busy ? "Explaining…" : "Explain"}</button>
        </fieldset>
      </form>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/explain" />}
      {result !== null && (
        <div className="summary" data-testid="explain-result" data-verdict={result.verdict}>
          <p role="status" data-testid="explain-verdict">
            <strong className={result.verdict === "allow" ? "status status-online" : "status status-expired"}>
              {result.verdict === "allow" ? "ALLOW" : "DENY"}
            </strong>{" "}
            {result.tunneler} → {result.resource}
            {result.first_failure !== null && <>: {result.first_failure.detail}</>}
          </p>
          <ol className="timeline" aria-label="Steps">
            {result.steps.map((s, i) => (
              <li key={`${s.step}-${i}`} data-step={s.step} data-ok={s.ok ? "true" : "false"}>
                <span className={s.ok ? "status status-online" : "status status-expired"}>{s.ok ? "ok" : "fail"}</span>{" "}
                <strong>{s.step}</strong> {s.detail}
              </li>
            ))}
          </ol>
        </div>
      )}
    </section>
  );
}
