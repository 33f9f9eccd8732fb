"use client";
import { useCallback, useEffect, useState, type FormEvent } from "react";
import ErrorPanel from "@/components/ErrorPanel";
import { api, type ApiError } from "@/lib/client";
import { useHydrated } from "@/lib/hydrated";

interface Token {
  id: string;
  role: string;
  name: string;
  name_is_prefix: boolean;
  uses_left: number;
  expires_at: number;
  created_at: number;
  expired: boolean;
  addresses: string[];
}

interface Created {
  token: string;
  id: string;
  role: string;
  name: string;
}

const fmt = (s: number) => (s ? new Date(s * 1000).toISOString().replace(".000Z", "Z") : "-");

export default function TokensView() {
  const hydrated = useHydrated();
  const [tokens, setTokens] = useState<Token[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  const [created, setCreated] = useState<Created | null>(null);
  const [copied, setCopied] = useState(false);
  const [role, setRole] = useState("tunneler");
  const [name, setName] = useState("");
  const [ttl, setTtl] = useState("1h");
  const [uses, setUses] = useState(1);
  const [addresses, setAddresses] = useState("");

  const load = useCallback(async () => {
    const res = await api<{ tokens: Token[] }>("GET", "tokens");
    if (res.ok) {
      setTokens(res.data.tokens);
      setError(null);
    } else setError(res.error);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const body: Record<string, unknown> = { role, name: name.trim(), ttl, uses };
    const addrs = addresses.split(/[\s,]+/).filter((a) => a !== "");
    if (role === "connector" && addrs.length > 0) body.addresses = addrs;
    const res = await api<Created>("POST", "tokens", body);
    if (!res.ok) {
      setError(res.error);
      return;
    }
    setCreated(res.data);
    setCopied(false);
    setName("");
    await load();
  };

  const remove = async (t: Token) => {
    if (!window.confirm(`Delete the token for ${t.role} ${t.name}?`)) return;
    const res = await api("DELETE", `tokens/${t.id}`);
    if (!res.ok) setError(res.error);
    await load();
  };

  const envLine = created === null ? "" : `ENROLLMENT_TOKEN=${created.token}`;
  return (
    <section>
      <h1>Enrollment tokens</h1>
      {error !== null && <ErrorPanel status={error.status} text={error.text} what="/api/admin/tokens" />}
      <form onSubmit={create} aria-label="Create a token">
        <fieldset className="inline-form" disabled={!hydrated}>
          <legend className="sr-only">Create a token</legend>
        <label>
          Role{" "}
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            <option value="tunneler">tunneler</option>
            <option value="connector">connector</option>
          </select>
        </label>
        <label>
          Name <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={128} />
        </label>
        <label>
          TTL <input value={ttl} onChange={(e) => setTtl(e.target.value)} size={6} />
        </label>
        <label>
          Uses <input type="number" min={1} value={uses} onChange={(e) => setUses(Number(e.target.value))} style={{ width: "6em" }} />
        </label>
        {role === "connector" && (
          <label>
            Addresses <input value={addresses} onChange={(e) => setAddresses(e.target.value)} placeholder="10.0.0.5" />
          </label>
        )}
        <button type="submit">Create token</button>
        </fieldset>
      </form>
      {created !== null && (
        <div className="created" role="status" data-testid="created-token">
          <p>
            Token for {created.role} <strong>{created.name}</strong>, shown this once: put this line in the agent&apos;s
            EnvironmentFile (/etc/ztr/{created.role}.conf).
          </p>
          <pre>
            <code data-testid="env-line">{envLine}</code>
          </pre>
          <button
            type="button"
            onClick={() => {
              void navigator.clipboard?.writeText(envLine).then(() => setCopied(true));
            }}
          >
            {copied ? "Copied" : "Copy"}
          </button>{" "}
          <button type="button" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      <table>
        <caption className="sr-only">Enrollment tokens (never their secrets)</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Uses left</th>
            <th scope="col">Expires</th>
            <th scope="col">Addresses</th>
            <th scope="col">ID</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {tokens.map((t) => (
            <tr key={t.id} data-token-name={t.name}>
              <td>
                {t.name}
                {t.name_is_prefix ? "*" : ""}
              </td>
              <td>{t.role}</td>
              <td>{t.uses_left}</td>
              <td className={t.expired ? "warn" : ""}>
                {fmt(t.expires_at)}
                {t.expired ? " (expired)" : ""}
              </td>
              <td>{t.addresses.join(", ") || "-"}</td>
              <td>
                <code>{t.id}</code>
              </td>
              <td>
                <button type="button" onClick={() => void remove(t)} aria-label={`Delete token ${t.name}`}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
          {tokens.length === 0 && (
            <tr>
              <td colSpan={7}>No token.</td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}
