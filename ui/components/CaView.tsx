"use client";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { isoTime } from "@/lib/fleet";
import { useHydrated } from "@/lib/hydrated";

// A CA object (docs/CONTROLLER.md, "A CA object").
interface Ca {
  number: number;
  fingerprint: string; // SHA-256 of the DER, hex
  not_after: number;
  signer: boolean;
  retire_at: number;
  operator_managed: boolean;
}

// How far the current bundle has reached the nodes ONLINE now, as their
// heartbeats report it (docs/CONTROLLER.md, GET /api/admin/ca).
interface Rollout {
  version: number;
  online: number;
  holding: number;
  behind: number;
  unknown: number;
  behind_nodes: { id: string; name: string; role: string; bundle_version: number }[];
}

interface Bundle {
  bundle: string;
  version: number;
  cas: Ca[];
  rollout?: Rollout; // absent from an older controller
}

const ROLLOUT_POLL_MS = 2000;

// What the operator types to rotate: a rotation cannot be undone.
export const ROTATE_WORD = "rotate";

// AB:CD:… as openssl prints it, so it can be compared by eye.
const colons = (hex: string) => (hex.toUpperCase().match(/../g) ?? []).join(":");

export default function CaView() {
  const hydrated = useHydrated();
  const [ca, setCa] = useState<Bundle | null>(null);
  const [error, setError] = useState<{ what: string; e: ApiError } | null>(null);
  const [typed, setTyped] = useState("");
  const [done, setDone] = useState("");
  const [copied, setCopied] = useState(false);

  const load = useCallback(async () => {
    const r = await api<Bundle>("GET", "ca");
    if (r.ok) {
      setCa(r.data);
      setError(null);
    } else setError({ what: "/api/admin/ca", e: r.error });
  }, []);
  // The rollout moves with the nodes' heartbeats after a rotation.
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      await load();
      if (!stopped) timer = setTimeout(tick, ROLLOUT_POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [load]);

  const rotate = async (e: FormEvent) => {
    e.preventDefault();
    if (typed !== ROTATE_WORD) return;
    const r = await api<{ version: number; cas: Ca[] }>("POST", "ca/rotate");
    setTyped("");
    if (!r.ok) {
      setError({ what: "/api/admin/ca/rotate", e: r.error });
      return;
    }
    const signer = r.data.cas.find((c) => c.signer);
    setDone(`Rotated: CA ${signer?.number ?? "?"} signs new certificates; bundle version ${r.data.version} pushed to the live sessions.`);
    await load();
  };

  const operator = ca?.cas.some((c) => c.operator_managed) ?? false;
  return (
    <section>
      <h1>Certificate authority</h1>
      {error !== null && <ErrorPanel status={error.e.status} text={error.e.text} what={error.what} />}
      {ca !== null && (
        <>
          <p data-testid="bundle-version">
            Bundle version <strong>{ca.version}</strong>, {ca.cas.length} CA{ca.cas.length === 1 ? "" : "s"}
            {operator ? " (operator-managed: CA_CERT/CA_KEY)" : ""}.
          </p>
          {ca.rollout !== undefined && <RolloutView r={ca.rollout} />}
          <table className="cas">
            <caption className="sr-only">The CAs in the trust bundle</caption>
            <thead>
              <tr>
                <th scope="col">CA</th>
                <th scope="col">Role</th>
                <th scope="col">SHA-256 fingerprint</th>
                <th scope="col">not_after</th>
                <th scope="col">Leaves the bundle</th>
              </tr>
            </thead>
            <tbody>
              {ca.cas.map((c) => (
                <tr key={c.number} data-ca={c.number}>
                  <td>{c.number}</td>
                  <td>{c.signer ? <strong>signer</strong> : "trusted"}</td>
                  <td>
                    <code className="fingerprint" data-testid="fingerprint">
                      {colons(c.fingerprint)}
                    </code>
                  </td>
                  <td>{isoTime(c.not_after)}</td>
                  <td>{c.retire_at ? isoTime(c.retire_at) : "kept"}</td>
                </tr>
              ))}
            </tbody>
          </table>

          <h2>Rotate</h2>
          {done !== "" && (
            <p role="status" data-testid="rotate-status">
              {done}
            </p>
          )}
          {operator ? (
            <p>This CA is the operator&apos;s (CA_CERT/CA_KEY): rotate it outside ztr.</p>
          ) : (
            <form onSubmit={rotate} className="confirm" aria-label="Rotate the CA">
              <p>
                A new CA signs every certificate issued from now on; the current signer stays in the bundle until its
                last certificate has expired. Every live node gets the new bundle at once. There is no undo. Type{" "}
                <code>{ROTATE_WORD}</code> to confirm.
              </p>
              <div className="inline-form">
                <label>
                  Confirmation <input value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" />
                </label>
                <button type="submit" className="danger" disabled={!hydrated || typed !== ROTATE_WORD}>
                  Rotate the CA
                </button>
              </div>
            </form>
          )}

          <h2>Trust bundle</h2>
          <p>
            <button
              type="button"
              disabled={!hydrated}
              onClick={() => void navigator.clipboard?.writeText(ca.bundle).then(() => setCopied(true), () => setCopied(false))}
            >
              {copied ? "Copied" : "Copy the bundle"}
            </button>
          </p>
          <pre className="bundle" data-testid="bundle">
            {ca.bundle}
          </pre>
        </>
      )}
    </section>
  );
}

function RolloutView({ r }: { r: Rollout }) {
  const done = r.online > 0 && r.holding === r.online;
  return (
    <div className="rollout" data-testid="rollout">
      <h2>Rollout of bundle version {r.version}</h2>
      <p>
        <progress value={r.holding} max={Math.max(r.online, 1)} aria-label={`nodes holding bundle version ${r.version}`} />{" "}
        <span data-testid="rollout-text">
          {r.online === 0
            ? "no node is online"
            : `${r.holding} of ${r.online} online nodes hold it${done ? " — done" : ""}`}
        </span>
        {r.behind > 0 && <span className="warn">{` · ${r.behind} on an older bundle`}</span>}
        {r.unknown > 0 && ` · ${r.unknown} not reported yet`}
      </p>
      {r.behind_nodes.length > 0 && (
        <ul data-testid="rollout-behind">
          {r.behind_nodes.map((n) => (
            <li key={n.id}>
              <a href={`/nodes/${encodeURIComponent(n.id)}`}>{n.name}</a> ({n.role}) holds version {n.bundle_version}
            </li>
          ))}
        </ul>
      )}
      <p className="hint">
        Each node reports the bundle it installed in its heartbeats. An offline node gets the new bundle when it
        connects, before anything else.
      </p>
    </div>
  );
}
