/*
 * sessions.ts — dashboard logins: random session ids held server-side, each
 * with its own CSRF token, ended by logout or after `dashboard.sessionIdleMinutes`
 * without a request.
 *
 * In memory, on purpose: a session is worth one login, so losing them all on a
 * restart costs a user a password prompt and nothing else, and keeping them out
 * of LevelDB keeps bearer-equivalent secrets off the disk. A multi-node setup
 * behind a balancer needs sticky sessions until the shared store (DESIGN.md,
 * Scale-out) carries them. The map holds only SHA-256 digests of the ids, so a
 * heap dump does not hand out live sessions, and it is bounded (MAX_SESSIONS).
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

function digest(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

export class SessionStore {
  // Map order is insertion order; get() re-inserts, so the first key is the least recently used.
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly idleMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** A new session; the returned id goes into the cookie and is never stored as is. */
  create(principal: Principal, label: string): { id: string; session: Session } {
    const id = randomBytes(ID_BYTES).toString('base64url');
    const session: Session = { principal, label, csrf: randomBytes(ID_BYTES).toString('base64url'), lastSeen: this.clock() };
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    this.sessions.set(digest(id), session);
    return { id, session };
  }

  /** The live session behind a cookie value (and marks it used), or undefined. */
  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const key = digest(id);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    const now = this.clock();
    this.sessions.delete(key);
    if (now - s.lastSeen > this.idleMs) return undefined;
    s.lastSeen = now;
    this.sessions.set(key, s);
    return s;
  }

  destroy(id: string | undefined): void {
    if (id) this.sessions.delete(digest(id));
  }
}
