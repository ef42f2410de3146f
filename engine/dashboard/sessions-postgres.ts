/*
 * sessions-postgres.ts — dashboard logins in PostgreSQL (storage.postgres),
 * table dashboard_sessions: a cookie issued by node A is valid on node B
 * (the balancer may send the next request anywhere), and a logout or an
 * idle expiry on one node ends the session on all of them.
 *
 * One statement per dashboard request: the lookup and the "used now" stamp
 * are one UPDATE … RETURNING on the primary key, with the idle limit checked
 * against the database's clock, so nodes whose clocks differ agree on when a
 * session expired. Only the SHA-256 of the id is stored (sessions.ts); the
 * CSRF token is useless without the cookie. Idle rows are deleted by sweep().
 *
 * PostgreSQL unavailable: the lookup throws SHARED_STATE_UNAVAILABLE and the
 * page answers 503 (nobody is let in, or logged out, by an outage).
 *
 * Side effects: PostgreSQL reads and writes.
 */
import type { Principal } from '../../common/api-keys.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import { newSessionSecrets, sessionDigest, type DashboardSessions, type Session } from './sessions.js';

interface Row {
  principal: Principal;
  label: string;
  csrf: string;
  last_seen: Date;
}

export class PgSessionStore implements DashboardSessions {
  constructor(
    private readonly pool: PgPool,
    private readonly idleMs: number,
  ) {}

  async create(principal: Principal, label: string): Promise<{ id: string; session: Session }> {
    const { id, csrf } = newSessionSecrets();
    const r = await sharedQuery<{ last_seen: Date }>(
      this.pool,
      'dashboard login',
      'INSERT INTO dashboard_sessions (id_digest, principal, label, csrf, last_seen) VALUES ($1, $2, $3, $4, now()) RETURNING last_seen',
      [sessionDigest(id), JSON.stringify(principal), label, csrf],
    );
    return { id, session: { principal, label, csrf, lastSeen: r.rows[0]!.last_seen.getTime() } };
  }

  async get(id: string | undefined): Promise<Session | undefined> {
    if (!id) return undefined;
    const r = await sharedQuery<Row>(
      this.pool,
      'dashboard session',
      `UPDATE dashboard_sessions SET last_seen = now()
        WHERE id_digest = $1 AND last_seen >= now() - $2 * interval '1 millisecond'
        RETURNING principal, label, csrf, last_seen`,
      [sessionDigest(id), this.idleMs],
    );
    const row = r.rows[0];
    return row && { principal: row.principal, label: row.label, csrf: row.csrf, lastSeen: row.last_seen.getTime() };
  }

  async destroy(id: string | undefined): Promise<void> {
    if (id) await sharedQuery(this.pool, 'dashboard logout', 'DELETE FROM dashboard_sessions WHERE id_digest = $1', [sessionDigest(id)]);
  }

  async sweep(): Promise<void> {
    await sharedQuery(this.pool, 'dashboard session expiry', `DELETE FROM dashboard_sessions WHERE last_seen < now() - $1 * interval '1 millisecond'`, [this.idleMs]);
  }
}
