/*
 * pool.ts — the one connection pool of a node to its shared-state database
 * (storage.postgres), and the one place a PostgreSQL failure becomes a Postino
 * error.
 *
 * Driver: node-postgres (`pg`), its built-in Pool. Every query of the shared
 * state is a parameterised statement through `sharedQuery`, which turns any
 * failure (refused or lost connection, timeout, a server shutting down, a
 * schema not migrated yet) into PostinoError SHARED_STATE_UNAVAILABLE
 * (451 4.3.0 / HTTP 503): temporary for the message or the API call, never
 * a reason to send without the check (DESIGN.md guarantee 4). The URL's
 * password never reaches a log or an error (common/redact.ts).
 *
 * Config: storage.postgres.{url, poolSize (10), connectTimeoutSeconds (5),
 * queryTimeoutSeconds (10)}.
 * Side effects: TCP connections to PostgreSQL, opened lazily on the first query.
 */
import pg from 'pg';
import type { PostgresConfig } from '../../config.js';
import { PostinoError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { redactUrlsIn } from '../../redact.js';

export type PgPool = pg.Pool;
export type PgClient = pg.PoolClient;

/** Seen in pg_stat_activity: which connections are Postino's. */
const APPLICATION_NAME = 'postino';

export function openPool(cfg: PostgresConfig, log?: Logger): PgPool {
  const pool = new pg.Pool({
    connectionString: cfg.url,
    max: cfg.poolSize,
    connectionTimeoutMillis: cfg.connectTimeoutSeconds * 1000,
    query_timeout: cfg.queryTimeoutSeconds * 1000,
    statement_timeout: cfg.queryTimeoutSeconds * 1000,
    application_name: APPLICATION_NAME,
  });
  // An idle connection the server closed (restart, failover) emits 'error' on the pool; unhandled,
  // it would end the process. The pool drops that client and the next query opens a new one.
  pool.on('error', (err) => log?.warn({ err: { message: redactUrlsIn(err.message) }, event: 'postgres-idle-error' }, 'PostgreSQL closed an idle connection'));
  return pool;
}

/** Any failure of a shared-state query, as the temporary error it becomes (see the header). */
export function unavailable(err: unknown, what: string): PostinoError {
  if (err instanceof PostinoError) return err;
  const e = err as { message?: string; code?: string };
  const detail = redactUrlsIn(e?.message ?? String(err));
  return new PostinoError('SHARED_STATE_UNAVAILABLE', `shared state (PostgreSQL) unavailable for ${what}: ${e?.code ? `${e.code} ` : ''}${detail}`);
}

/** One statement on a pooled connection; failures as SHARED_STATE_UNAVAILABLE. */
export async function sharedQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(pool: PgPool, what: string, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(text, values);
  } catch (err) {
    throw unavailable(err, what);
  }
}

/** Several statements in one transaction on one connection; rolled back on any failure. */
export async function sharedTransaction<T>(pool: PgPool, what: string, fn: (c: PgClient) => Promise<T>): Promise<T> {
  let client: PgClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw unavailable(err, what);
  }
  let broken: unknown;
  // While a client is checked out, pg-pool does not listen for its errors (it removes its idle
  // listener): a server that ends the connection between two statements (a shutdown, a failover)
  // would be an 'error' event with no listener, which ends the process. Kept here; the next
  // statement then fails and the transaction is given up as unavailable.
  const onError = (err: Error): void => {
    broken ??= err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const r = await fn(client);
    await client.query('COMMIT');
    return r;
  } catch (err) {
    broken = err;
    await client.query('ROLLBACK').catch(() => undefined);
    throw unavailable(err, what);
  } finally {
    client.off('error', onError);
    // A connection that failed mid-transaction is not given back to others.
    client.release(broken instanceof Error && !(broken instanceof PostinoError) ? broken : undefined);
  }
}
