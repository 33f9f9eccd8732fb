// The console's own login: one operator password (UI_PASSWORD) compared as
// scrypt digests in constant time, sessions held in this process (a
// restart logs everyone out), a CSRF token per session, and a bound on
// failed attempts per client address and in all.
import { randomBytes, scryptSync, timingSafeEqual } from "node:crypto";

export const SESSION_COOKIE = "ztr_ui_session";
export const SESSION_TTL_MS = 8 * 60 * 60 * 1000;
export const MAX_SESSIONS = 256;
export const FAILURES_PER_PEER = 5; // per FAILURE_WINDOW_MS
export const FAILURES_TOTAL = 30; // per FAILURE_WINDOW_MS, every address together
export const FAILURE_WINDOW_MS = 60_000;
export const MIN_PASSWORD_LENGTH = 12;

export interface Session {
  id: string;
  csrf: string;
  expires: number;
}

interface Store {
  sessions: Map<string, Session>;
  failures: Map<string, number[]>; // peer -> failure times in the window
  allFailures: number[];
  digest: { salt: Buffer; hash: Buffer; of: string } | null;
}

// One store per process: route handlers and pages are bundled separately,
// so module state would not be shared between them.
const g = globalThis as typeof globalThis & { __ztrConsole?: Store };
function store(): Store {
  g.__ztrConsole ??= { sessions: new Map(), failures: new Map(), allFailures: [], digest: null };
  return g.__ztrConsole;
}

const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

function scrypt(password: string, salt: Buffer): Buffer {
  return scryptSync(password.normalize("NFC"), salt, 32, SCRYPT);
}

// The configured password is digested once; what is compared is always two
// digests of the same length.
export function passwordMatches(candidate: string, configured: string | undefined): boolean {
  if (configured === undefined || configured.length < MIN_PASSWORD_LENGTH) return false;
  const s = store();
  if (s.digest === null || s.digest.of !== configured) {
    const salt = randomBytes(16);
    s.digest = { salt, hash: scrypt(configured, salt), of: configured };
  }
  if (candidate.length > 1024) return false;
  return timingSafeEqual(scrypt(candidate, s.digest.salt), s.digest.hash);
}

function prune(times: number[], now: number): number[] {
  return times.filter((t) => now - t < FAILURE_WINDOW_MS);
}

// Seconds to wait before another attempt is heard, 0 if one may be tried now.
export function loginBlockedFor(peer: string, now = Date.now()): number {
  const s = store();
  s.allFailures = prune(s.allFailures, now);
  const mine = prune(s.failures.get(peer) ?? [], now);
  if (mine.length > 0) s.failures.set(peer, mine);
  else s.failures.delete(peer);
  const waitFor = (times: number[]) => Math.ceil((FAILURE_WINDOW_MS - (now - (times[0] ?? now))) / 1000);
  if (mine.length >= FAILURES_PER_PEER) return Math.max(1, waitFor(mine));
  if (s.allFailures.length >= FAILURES_TOTAL) return Math.max(1, waitFor(s.allFailures));
  return 0;
}

export function recordFailure(peer: string, now = Date.now()): void {
  const s = store();
  const mine = prune(s.failures.get(peer) ?? [], now);
  mine.push(now);
  s.failures.set(peer, mine);
  // Bounded: at most this many distinct addresses are remembered.
  if (s.failures.size > 10_000) {
    const oldest = s.failures.keys().next().value;
    if (oldest !== undefined) s.failures.delete(oldest);
  }
  s.allFailures.push(now);
}

export function createSession(now = Date.now()): Session {
  const s = store();
  for (const [id, sess] of s.sessions) if (sess.expires <= now) s.sessions.delete(id);
  while (s.sessions.size >= MAX_SESSIONS) {
    const oldest = s.sessions.keys().next().value;
    if (oldest === undefined) break;
    s.sessions.delete(oldest);
  }
  const sess: Session = {
    id: randomBytes(32).toString("base64url"),
    csrf: randomBytes(32).toString("base64url"),
    expires: now + SESSION_TTL_MS,
  };
  s.sessions.set(sess.id, sess);
  return sess;
}

export function findSession(id: string | undefined, now = Date.now()): Session | null {
  if (id === undefined || id === "" || id.length > 128) return null;
  const s = store();
  const sess = s.sessions.get(id);
  if (sess === undefined) return null;
  if (sess.expires <= now) {
    s.sessions.delete(id);
    return null;
  }
  return sess;
}

export function endSession(id: string | undefined): void {
  if (id !== undefined) store().sessions.delete(id);
}

export function csrfMatches(sess: Session, presented: string | null | undefined): boolean {
  if (presented === null || presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(sess.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function sessionCookie(sess: Session, secure: boolean): string {
  return (
    `${SESSION_COOKIE}=${sess.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(SESSION_TTL_MS / 1000)}` +
    (secure ? "; Secure" : "")
  );
}

export function clearedCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0` + (secure ? "; Secure" : "");
}
