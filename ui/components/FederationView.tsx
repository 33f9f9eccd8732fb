"use client";
import { useEffect, useMemo, useState, type FormEvent } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, statusText, type ApiError } from "@/lib/client";
import {
  expiryText,
  grantBody,
  grantablePeers,
  grantsByPeer,
  heartbeatText,
  peerActions,
  stateClass,
  tunnelerId,
  type Grant,
  type GrantForm,
  type Peer,
} from "@/lib/federation";
import { isoTime } from "@/lib/fleet";
import { useHydrated } from "@/lib/hydrated";
import { usePoll } from "@/lib/poll";

interface Resource {
  name: string;
  description: string;
}

// A token the controller just made: shown once, held only in this
// component's state (never in web storage, the URL or a cookie), dropped
// by Done.
interface ShownToken {
  peer: string;
  token: string;
  expiresAt: number;
  made: "proposed" | "replaced";
}

// The open dialog of one peer row: suspend (with a reason) or revoke
// (the name typed in full).
type Open = { kind: "suspend" | "revoke"; peer: string } | null;

const RESOURCE_POLL_MS = 5000;
const NO_GRANT: GrantForm = { peer: "", resource: "", tunneler: "", cidrs: "", expiry: "never", expiresIn: "2h", expiresAt: "" };

export default function FederationView({ pollMs }: { pollMs: number }) {
  const hydrated = useHydrated();
  const [peers, setPeers] = useState<Peer[] | null>(null);
  const [grants, setGrants] = useState<Grant[]>([]);
  const [resources, setResources] = useState<Resource[]>([]);
  // What the polls could not fetch, and what the last change was refused.
  const [error, setError] = useState<{ what: string; e: ApiError } | null>(null);
  const [refused, setRefused] = useState<{ what: string; e: ApiError } | null>(null);
  const [said, setSaid] = useState("");
  const [now, setNow] = useState(() => Math.floor(Date.now() / 1000));
  const [updated, setUpdated] = useState<number | null>(null);
  const [shown, setShown] = useState<ShownToken | null>(null);
  const [copied, setCopied] = useState(false);
  const [busy, setBusy] = useState(false);
  // propose
  const [pName, setPName] = useState("");
  const [pUrl, setPUrl] = useState("");
  const [pTtl, setPTtl] = useState("7d");
  // accept
  const [aUrl, setAUrl] = useState("");
  const [aToken, setAToken] = useState("");
  const [aName, setAName] = useState("");
  // a peer's dialog
  const [open, setOpen] = useState<Open>(null);
  const [reason, setReason] = useState("");
  const [typed, setTyped] = useState("");
  // grant
  const [form, setForm] = useState<GrantForm>(NO_GRANT);
  const [formError, setFormError] = useState("");

  // Peers and grants every poll, like the Nodes page.
  const load = async (live: () => boolean) => {
    const [p, g] = await Promise.all([
      api<{ peers: Peer[] }>("GET", "federation/peers"),
      api<{ grants: Grant[] }>("GET", "federation/grants"),
    ]);
    if (!live()) return;
    if (!p.ok) setError({ what: "/api/admin/federation/peers", e: p.error });
    else if (!g.ok) setError({ what: "/api/admin/federation/grants", e: g.error });
    else {
      setPeers(p.data.peers);
      setGrants(g.data.grants);
      setError(null);
      setUpdated(Math.floor(Date.now() / 1000));
    }
    setNow(Math.floor(Date.now() / 1000));
  };
  const poke = usePoll(load, pollMs, [pollMs]);

  // Resources change rarely: for the grant form's choice.
  const loadResources = async (live: () => boolean) => {
    const r = await api<{ resources: Resource[] }>("GET", "resources");
    if (!live()) return;
    if (r.ok) setResources(r.data.resources);
    else setError({ what: "/api/admin/resources", e: r.error });
  };
  const pokeResources = usePoll(loadResources, RESOURCE_POLL_MS, []);

  useEffect(() => {
    poke();
    pokeResources();
  }, [poke, pokeResources]);

  const grantable = useMemo(() => grantablePeers(peers ?? []), [peers]);
  const byPeer = useMemo(() => grantsByPeer(grants), [grants]);
  const chosenPeer = grantable.find((p) => p.name === form.peer);

  // One change: the answer's error shown as the controller wrote it.
  const change = async <T,>(method: string, path: string, body: unknown): Promise<T | null> => {
    setBusy(true);
    const res = await api<T>(method, path, body);
    setBusy(false);
    if (!res.ok) {
      setRefused({ what: `${method} /api/admin/${path}`, e: res.error });
      setSaid("");
      return null;
    }
    setRefused(null);
    poke();
    return res.data;
  };

  const propose = async (e: FormEvent) => {
    e.preventDefault();
    const body: Record<string, string> = { name: pName.trim() };
    if (pUrl.trim() !== "") body.url = pUrl.trim();
    if (pTtl.trim() !== "") body.ttl = pTtl.trim();
    const r = await change<{ token: string; peer: Peer }>("POST", "federation/peers", body);
    if (r === null) return;
    setShown({ peer: r.peer.name, token: r.token, expiresAt: r.peer.token_expires_at, made: "proposed" });
    setCopied(false);
    setPName("");
    setPUrl("");
    setSaid(`Proposed peer ${r.peer.name}: hand its operator the token below.`);
  };

  const newToken = async (p: Peer) => {
    const r = await change<{ token: string; peer: Peer }>("POST", `federation/peers/${encodeURIComponent(p.name)}/token`, { ttl: pTtl.trim() || "7d" });
    if (r === null) return;
    setShown({ peer: r.peer.name, token: r.token, expiresAt: r.peer.token_expires_at, made: "replaced" });
    setCopied(false);
    setSaid(`A new token for ${r.peer.name}; the previous one no longer works.`);
  };

  const accept = async (e: FormEvent) => {
    e.preventDefault();
    const body: Record<string, string> = { url: aUrl.trim(), token: aToken.trim() };
    if (aName.trim() !== "") body.name = aName.trim();
    const r = await change<Peer>("POST", "federation/accept", body);
    // The token is single use whatever the answer: never kept in the form.
    setAToken("");
    if (r === null) return;
    setAUrl("");
    setAName("");
    setSaid(`Accepted: peer ${r.name} (${r.trust_domain}) is ${r.state}; heartbeats take it to active.`);
  };

  const closeDialog = () => {
    setOpen(null);
    setReason("");
    setTyped("");
  };

  const suspend = async (e: FormEvent) => {
    e.preventDefault();
    if (open === null) return;
    const body = reason.trim() === "" ? {} : { reason: reason.trim() };
    const r = await change<Peer>("POST", `federation/peers/${encodeURIComponent(open.peer)}/suspend`, body);
    if (r === null) return;
    closeDialog();
    setSaid(`Suspended peer ${r.name}: its link is closed and not redialled until it is resumed.`);
  };

  const resume = async (p: Peer) => {
    const r = await change<Peer>("POST", `federation/peers/${encodeURIComponent(p.name)}/resume`, {});
    if (r !== null) setSaid(`Resumed peer ${r.name} (${r.state}); heartbeats take it to active.`);
  };

  const revoke = async (e: FormEvent) => {
    e.preventDefault();
    if (open === null || typed !== open.peer) return;
    const r = await change<Peer>("POST", `federation/peers/${encodeURIComponent(open.peer)}/revoke`, {});
    if (r === null) return;
    closeDialog();
    if (shown?.peer === r.name) setShown(null);
    setSaid(`Revoked peer ${r.name}: its bundle is deleted and its link closed.`);
  };

  const grant = async (e: FormEvent) => {
    e.preventDefault();
    const b = grantBody(form);
    if (!b.ok) {
      setFormError(b.message);
      return;
    }
    setFormError("");
    const r = await change<Grant>("POST", "federation/grants", b.body);
    if (r === null) return;
    setForm({ ...NO_GRANT, peer: form.peer, resource: form.resource });
    setSaid(`Granted ${r.tunneler} → ${r.resource} (peer ${r.peer}, grant ${r.id}).`);
  };

  const revokeGrant = async (g: Grant) => {
    if (!window.confirm(`Revoke the grant of ${g.resource} to ${g.tunneler}?`)) return;
    const r = await change<{ id: string }>("DELETE", `federation/grants/${encodeURIComponent(g.id)}`, undefined);
    if (r !== null) setSaid(`Revoked grant ${r.id}: ${g.tunneler} no longer reaches ${g.resource}.`);
  };

  const set = (k: keyof GrantForm) => (v: string) => setForm((f) => ({ ...f, [k]: v }));

  return (
    <section>
      <h1>Federation</h1>
      <p className="muted">
        Peers are controllers of other trust domains (docs/FEDERATION.md). A proposes, B accepts with the single-use token;
        heartbeats take the peer to active. Grants let a peer&apos;s tunnelers reach resources here.
      </p>
      {error !== null && <ErrorPanel status={error.e.status} text={error.e.text} what={error.what} />}
      {refused !== null && (
        <div className="error-panel" role="alert" data-testid="federation-refused">
          <strong>
            {refused.e.status === 0 ? "No answer" : statusText(refused.e.status)}: {refused.what}
          </strong>
          <p data-testid="refused-text">{refused.e.text}</p>
        </div>
      )}
      <p className="muted" role="status" data-testid="federation-status">
        {said}
      </p>

      {shown !== null && (
        <div className="created" role="status" data-testid="federation-token">
          <p>
            Acceptance token for peer <strong>{shown.peer}</strong>, shown this once
            {shown.expiresAt ? `; it expires ${isoTime(shown.expiresAt)}` : ""}. Hand it to {shown.peer}&apos;s operator
            over a channel you trust, for <code>controller federation accept --url HOST:PORT --token-file FILE</code> or
            this page&apos;s Accept form on their console.
          </p>
          <pre className="token">
            <code data-testid="token-text">{shown.token}</code>
          </pre>
          <button
            type="button"
            onClick={() => {
              void navigator.clipboard?.writeText(shown.token).then(() => setCopied(true));
            }}
          >
            {copied ? "Copied" : "Copy"}
          </button>{" "}
          <button type="button" onClick={() => setShown(null)}>
            Done
          </button>
        </div>
      )}

      <h2>Peers</h2>
      <p className="muted" data-testid="updated">
        {updated === null ? "not updated yet" : `updated ${now - updated <= 1 ? "just now" : `${now - updated} s ago`}`}
        {` · every ${pollMs / 1000} s`}
      </p>
      <table className="peers">
        <caption className="sr-only">Federation peers</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">State</th>
            <th scope="col">Trust domain</th>
            <th scope="col">Direction</th>
            <th scope="col">Last heartbeat</th>
            <th scope="col">Bundle</th>
            <th scope="col">Token</th>
            <th scope="col">Reason</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {(peers ?? []).map((p) => {
            const can = peerActions(p);
            return (
              <tr key={p.id} data-peer-name={p.name} data-peer-state={p.state}>
                <td>{p.name}</td>
                <td>
                  <span className={stateClass(p.state)} data-state={p.state}>
                    {p.state}
                  </span>
                </td>
                <td>{p.trust_domain || "-"}</td>
                <td>
                  {p.direction}
                  {p.url !== "" && (
                    <>
                      {" "}
                      <code>{p.url}</code>
                    </>
                  )}
                </td>
                <td data-testid="heartbeat">{heartbeatText(p)}</td>
                <td data-testid="bundle-version">{p.bundle_version ? `version ${p.bundle_version}` : "-"}</td>
                <td>
                  {p.token_pending ? (
                    <span className={p.token_expires_at <= now ? "warn" : ""}>
                      pending, expires {isoTime(p.token_expires_at)}
                      {p.token_expires_at <= now ? " (expired)" : ""}
                    </span>
                  ) : (
                    "-"
                  )}
                </td>
                <td data-testid="reason" className={p.state === "degraded" ? "warn" : ""}>
                  {p.reason || "-"}
                </td>
                <td>
                  <div className="actions">
                    {can.token && (
                      <button type="button" disabled={!hydrated || busy} onClick={() => void newToken(p)} aria-label={`New token for peer ${p.name}`}>
                        New token
                      </button>
                    )}
                    {can.suspend && (
                      <button type="button" disabled={!hydrated || busy} onClick={() => { closeDialog(); setOpen({ kind: "suspend", peer: p.name }); }} aria-label={`Suspend peer ${p.name}…`}>
                        Suspend…
                      </button>
                    )}
                    {can.resume && (
                      <button type="button" disabled={!hydrated || busy} onClick={() => void resume(p)} aria-label={`Resume peer ${p.name}`}>
                        Resume
                      </button>
                    )}
                    {can.revoke && (
                      <button type="button" className="danger" disabled={!hydrated || busy} onClick={() => { closeDialog(); setOpen({ kind: "revoke", peer: p.name }); }} aria-label={`Revoke peer ${p.name}…`}>
                        Revoke…
                      </button>
                    )}
                  </div>
                </td>
              </tr>
            );
          })}
          {peers !== null && peers.length === 0 && (
            <tr>
              <td colSpan={9}>No peer yet: propose one, or accept another controller&apos;s token.</td>
            </tr>
          )}
          {peers === null && error === null && (
            <tr>
              <td colSpan={9}>loading…</td>
            </tr>
          )}
        </tbody>
      </table>

      {open?.kind === "suspend" && (
        <form onSubmit={suspend} className="confirm" aria-label={`Suspend peer ${open.peer}`}>
          <p>
            Suspending closes the link to <strong>{open.peer}</strong> and stops its reconciliation until it is resumed;
            the other side&apos;s attempts are refused with the reason.
          </p>
          <div className="inline-form">
            <label>
              Reason <input value={reason} onChange={(e) => setReason(e.target.value)} maxLength={200} />
            </label>
            <button type="submit" disabled={busy}>
              Suspend {open.peer}
            </button>
            <button type="button" onClick={closeDialog}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {open?.kind === "revoke" && (
        <form onSubmit={revoke} className="confirm" aria-label={`Confirm revocation of peer ${open.peer}`}>
          <p>
            Revoking deletes <strong>{open.peer}</strong>&apos;s trust bundle and closes its link and every session that
            relied on it; there is no undo (propose the name anew to start over). Type the peer&apos;s name to confirm.
          </p>
          <div className="inline-form">
            <label>
              Type the peer&apos;s name <input value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" />
            </label>
            <button type="submit" className="danger" disabled={busy || typed !== open.peer}>
              Revoke {open.peer}
            </button>
            <button type="button" onClick={closeDialog}>
              Cancel
            </button>
          </div>
        </form>
      )}

      <div className="columns">
        <form onSubmit={propose} aria-label="Propose a peer">
          <fieldset disabled={!hydrated || busy}>
            <legend>Propose a peer</legend>
            <div className="inline-form">
              <label>
                Peer name <input value={pName} onChange={(e) => setPName(e.target.value)} required maxLength={128} />
              </label>
              <label>
                Its URL <input value={pUrl} onChange={(e) => setPUrl(e.target.value)} placeholder="HOST:PORT (optional)" />
              </label>
              <label>
                Token TTL <input value={pTtl} onChange={(e) => setPTtl(e.target.value)} size={6} />
              </label>
              <button type="submit">Propose</button>
            </div>
          </fieldset>
        </form>
        <form onSubmit={accept} aria-label="Accept a peer's token">
          <fieldset disabled={!hydrated || busy}>
            <legend>Accept a peer&apos;s token</legend>
            <div className="inline-form">
              <label>
                Proposer&apos;s address <input value={aUrl} onChange={(e) => setAUrl(e.target.value)} required placeholder="HOST:PORT" />
              </label>
              <label>
                Name it <input value={aName} onChange={(e) => setAName(e.target.value)} maxLength={128} placeholder="its trust domain" />
              </label>
            </div>
            <label className="block">
              Acceptance token
              <textarea
                value={aToken}
                onChange={(e) => setAToken(e.target.value)}
                required
                rows={3}
                autoComplete="off"
                spellCheck={false}
              />
            </label>
            <button type="submit">{busy ? "Working…" : "Accept"}</button>
          </fieldset>
        </form>
      </div>

      <h2>Grants</h2>
      <p className="muted">Which of a peer&apos;s tunnelers reach which resource here, from which addresses, until when.</p>
      <form onSubmit={grant} aria-label="Grant a resource to a peer's tunneler">
        <fieldset disabled={!hydrated || busy}>
          <legend className="sr-only">Grant a resource to a peer&apos;s tunneler</legend>
          <div className="inline-form">
            <span className="field">
              <label htmlFor="grant-peer">Peer</label>{" "}
              <select id="grant-peer" value={form.peer} onChange={(e) => set("peer")(e.target.value)}>
                <option value="">choose…</option>
                {grantable.map((p) => (
                  <option key={p.id} value={p.name}>
                    {p.name} ({p.trust_domain})
                  </option>
                ))}
              </select>
            </span>
            <span className="field">
              <label htmlFor="grant-resource">Resource</label>{" "}
              <select id="grant-resource" value={form.resource} onChange={(e) => set("resource")(e.target.value)}>
                <option value="">choose…</option>
                {resources.map((r) => (
                  <option key={r.name} value={r.name}>
                    {r.name}
                  </option>
                ))}
              </select>
            </span>
            <label>
              Tunneler SPIFFE ID{" "}
              <input
                value={form.tunneler}
                onChange={(e) => set("tunneler")(e.target.value)}
                size={40}
                placeholder={tunnelerId(chosenPeer, "NAME") || "spiffe://TRUST_DOMAIN/tunneler/NAME"}
                aria-invalid={formError.startsWith("Give the tunneler") || undefined}
              />
            </label>
            <label>
              Source CIDRs{" "}
              <input value={form.cidrs} onChange={(e) => set("cidrs")(e.target.value)} placeholder="any (e.g. 10.0.0.0/8)" />
            </label>
            <span className="field">
              <label htmlFor="grant-expiry">Expires</label>{" "}
              <select id="grant-expiry" value={form.expiry} onChange={(e) => set("expiry")(e.target.value)}>
                <option value="never">never</option>
                <option value="in">after</option>
                <option value="at">at (UTC)</option>
              </select>
            </span>
            {form.expiry === "in" && (
              <label>
                Lasts <input value={form.expiresIn} onChange={(e) => set("expiresIn")(e.target.value)} size={6} />
              </label>
            )}
            {form.expiry === "at" && (
              <label>
                Expires at{" "}
                <input type="datetime-local" step={1} value={form.expiresAt} onChange={(e) => set("expiresAt")(e.target.value)} />
              </label>
            )}
            <button type="submit">Grant</button>
          </div>
          {formError !== "" && (
            <p className="error" role="alert" data-testid="grant-form-error">
              {formError}
            </p>
          )}
        </fieldset>
      </form>
      {grants.length === 0 && peers !== null && <p data-testid="no-grants">No grant: no peer&apos;s tunneler reaches a resource here.</p>}
      {[...byPeer.entries()].map(([peer, list]) => (
        <div key={peer} data-grants-peer={peer}>
          <h3>
            Granted to {peer} ({list.length})
          </h3>
          <table className="grants">
            <caption className="sr-only">Grants to peer {peer}</caption>
            <thead>
              <tr>
                <th scope="col">Resource</th>
                <th scope="col">Tunneler</th>
                <th scope="col">Source CIDRs</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                <th scope="col">ID</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((g) => (
                <tr key={g.id} data-grant-id={g.id} data-grant-tunneler={g.tunneler} data-grant-resource={g.resource}>
                  <td>{g.resource}</td>
                  <td>
                    <code>{g.tunneler}</code>
                  </td>
                  <td>{g.source_cidrs.length === 0 ? "any" : g.source_cidrs.join(", ")}</td>
                  <td>{expiryText(g, now)}</td>
                  <td>
                    <span className={g.state === "active" ? "status status-online" : "status status-expired"} data-state={g.state}>
                      {g.state}
                    </span>
                  </td>
                  <td>
                    <code>{g.id}</code>
                  </td>
                  <td>
                    <button type="button" disabled={!hydrated || busy} onClick={() => void revokeGrant(g)} aria-label={`Revoke grant of ${g.resource} to ${g.tunneler}`}>
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </section>
  );
}
