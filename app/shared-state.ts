/*
 * shared-state.ts — picks, once at start, where a hosted node keeps the state
 * every node must agree on (issue #14): without storage.postgres, the node's
 * own LevelDB (nothing to install); with it, PostgreSQL through one pool.
 * Today that is the suppression list, the account quotas and the forwarder's
 * spool ids (effectively-once across nodes); the other shared stores follow.
 *
 * At start with PostgreSQL: a database whose schema is older than this code
 * needs stops the node with a message naming `postino db migrate` (an upgrade
 * is stop, migrate, start). A database that does not answer does not stop it:
 * the node accepts mail into its local queue and every shared read defers
 * until PostgreSQL answers (engine/suppression-postgres.ts).
 *
 * Config: storage.postgres (common/config.ts).
 * Side effects: opens a connection pool (PostgreSQL only).
 */
import type { Config } from '../common/config.js';
import type { Logger } from '../common/log.js';
import { redactUrl, redactUrlsIn } from '../common/redact.js';
import type { Store } from '../common/store.js';
import { LevelSuppressionList, type SuppressionList } from '../engine/suppression.js';
import type { QuotaCounter, QuotaLimits } from '../listener/quota.js';
import type { SharedSpoolIds } from '../common/spool-id-postgres.js';

export interface SharedState {
  backend: 'leveldb' | 'postgresql';
  suppression: SuppressionList;
  /** The listener's quota counter; undefined = its default, this node's LevelDB. */
  quotas: ((limits: QuotaLimits[], now: () => number) => QuotaCounter) | undefined;
  /** Spool ids for every node; undefined = this node's own memory only. */
  spoolIds: SharedSpoolIds | undefined;
  /** Forgets what expired (hourly, with the node's other sweeps). */
  sweep(): Promise<void>;
  /** Before the LevelDB store closes: parked writes still need it. */
  close(): Promise<void>;
}

export async function openSharedState(config: Config, store: Store, log: Logger): Promise<SharedState> {
  const pgConfig = config.storage.postgres;
  if (!pgConfig) {
    const suppression = new LevelSuppressionList(store);
    return { backend: 'leveldb', suppression, quotas: undefined, spoolIds: undefined, sweep: async () => undefined, close: () => suppression.close() };
  }
  // Loaded only when configured: a single node never loads the driver.
  const { openPool } = await import('../common/storage/postgres/pool.js');
  const { schemaVersion, SCHEMA_VERSION } = await import('../common/storage/postgres/migrations.js');
  const { PgSuppressionList } = await import('../engine/suppression-postgres.js');
  const { PgQuotas } = await import('../listener/quota-postgres.js');
  const { PgSpoolIds } = await import('../common/spool-id-postgres.js');
  const pool = openPool(pgConfig, log);
  const where = redactUrl(pgConfig.url);
  let version: number | undefined;
  try {
    version = await schemaVersion(pool);
  } catch (err) {
    log.warn({ event: 'postgres-unavailable', url: where, err: { message: redactUrlsIn((err as Error).message) } }, 'PostgreSQL does not answer: accepting mail, shared reads wait for it');
  }
  if (version !== undefined && version < SCHEMA_VERSION) {
    await pool.end();
    throw new Error(`${where}: shared-state schema at version ${version}, this postino needs ${SCHEMA_VERSION}: run \`postino db migrate --config <file>\` first`);
  }
  log.info({ event: 'shared-state', backend: 'postgresql', url: where, schema: version }, 'shared state in PostgreSQL');
  const suppression = new PgSuppressionList(pool, store, log.child({ component: 'suppression' }));
  let quotas: QuotaCounter | undefined;
  const spoolIds = new PgSpoolIds(pool, store, config.listener.spoolIdTtlSeconds * 1000, log.child({ component: 'spool-ids' }));
  // Ids accepted just before a crash that had not reached PostgreSQL yet (spool-id-postgres.ts).
  if (version !== undefined) {
    await spoolIds.reconcile().then(
      (n) => n > 0 && log.info({ event: 'spool-ids-reconciled', count: n }, 'recent spool ids written to PostgreSQL'),
      (err: unknown) => log.warn({ err: { message: redactUrlsIn((err as Error).message) } }, 'recent spool ids not reconciled'),
    );
  }
  return {
    backend: 'postgresql',
    suppression,
    quotas: (limits, now) => (quotas = new PgQuotas(pool, limits, now, log.child({ component: 'quota' }))),
    spoolIds,
    async sweep() {
      await spoolIds.sweep();
    },
    async close() {
      await quotas?.close?.();
      await spoolIds.close();
      await suppression.close();
      await pool.end();
    },
  };
}
