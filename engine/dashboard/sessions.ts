/*
 * sessions.ts — dashboard logins: random session ids held server-side, each
 * with its own CSRF token, ended by logout or after `dashboard.sessionIdleMinutes`
 * without a request. Two backends behind one interface (DashboardSessions),
 * chosen by app/shared-state.ts:
 *
 * - In memory (here; a single node), on purpose: a session is worth one login,
 *   so losing them all on a restart costs a user a password prompt and nothing
 *   else, and keeping them out of LevelDB keeps bearer-equivalent secrets off
 *   the disk. The map is bounded (MAX_SESSIONS).
 * - PostgreSQL (sessions-postgres.ts; storage.postgres): a cookie issued by one
 *   node is valid on every node behind the balancer, and a logout or an expiry
 *   ends it everywhere.
 *
 * Both keep only SHA-256 digests of the ids, so a heap dump or a database dump
 * does not hand out live sessions.
 *
 * Side effects: none (memory only).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from '../../common/api-keys.js';

/** 32 random bytes: unguessable (256 bits), base64url so it fits a cookie as is. */
const ID_BYTES = 32;
/** Beyond this many live sessions the least recently used one is dropped (an attacker with a valid login could otherwise grow the map). */
const MAX_SESSIONS = 10_000;

export interface Session {
  principal: Principal;
  /** Who this is, in words, for "paused by" and the page header. */
  label: string;
  csrf: string;
  lastSeen: number;
}

export interface DashboardSessions {
  /** A new session; the returned id goes into the cookie and is never stored as is. */
  create(principal: Principal, label: string): Promise<{ id: string; session: Session }>;
  /** The live session behind a cookie value (and marks it used), or undefined. */
  get(id: string | undefined): Promise<Session | undefined>;
  destroy(id: string | undefined): Promise<void>;
  /** Forgets idle sessions (hourly, with the node's other sweeps). */
  sweep?(): Promise<void>;
}

export function sessionDigest(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/** A fresh id and CSRF token. */
export function newSessionSecrets(): { id: string; csrf: string } {
  return { id: randomBytes(ID_BYTES).toString('base64url'), csrf: randomBytes(ID_BYTES).toString('base64url') };
}

export class MemorySessionStore implements DashboardSessions {
  // Map order is insertion order; get() re-inserts, so the first key is the least recently used.
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly idleMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  async create(principal: Principal, label: string): Promise<{ id: string; session: Session }> {
    const { id, csrf } = newSessionSecrets();
    const session: Session = { principal, label, csrf, lastSeen: this.clock() };
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(sessionDigest(id), session);
    return { id, session };
  }

  async get(id: string | undefined): Promise<Session | undefined> {
    if (!id) return undefined;
    const key = sessionDigest(id);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    const now = this.clock();
    this.sessions.delete(key);
    if (now - s.lastSeen > this.idleMs) return undefined;
    s.lastSeen = now;
    this.sessions.set(key, s);
    return s;
  }

  async destroy(id: string | undefined): Promise<void> {
    if (id) this.sessions.delete(sessionDigest(id));
  }
}
