/*
 * db-command.ts — `postino db migrate [--config F]`: applies the shared-state
 * schema (common/storage/postgres/migrations.ts) to the database named by
 * storage.postgres.url. Run once per upgrade, from any one machine, before the
 * nodes start (stop, migrate, start); running it again, or on two machines at
 * once, is safe and applies nothing twice.
 *
 * Exit status: 0 applied or already current; 1 the database refused or could
 * not be reached; 2 no storage.postgres in the config (LevelDB needs no migration).
 */
import { openPool } from '../common/storage/postgres/pool.js';
import { migrate, SCHEMA_VERSION } from '../common/storage/postgres/migrations.js';
import { redactUrl } from '../common/redact.js';
import { loadOrExit, UsageError } from './cli-support.js';

export async function dbCommand(sub: string | undefined, configFile: string | undefined): Promise<void> {
  if (sub !== 'migrate') throw new UsageError('usage: postino db migrate [--config F]');
  const config = loadOrExit(configFile);
  const pg = config.storage.postgres;
  if (!pg) throw new UsageError(`${configFile ?? 'built-in defaults'}: no storage.postgres (the shared state is in each node's LevelDB, which needs no migration)`);
  const pool = openPool(pg);
  try {
    const r = await migrate(pool);
    const where = redactUrl(pg.url);
    if (r.applied.length === 0) process.stdout.write(`${where}: schema at version ${r.version}, nothing to apply\n`);
    else process.stdout.write(`${where}: applied ${r.applied.map((a) => `${a.version} (${a.name})`).join(', ')}; schema at version ${r.version}\n`);
    if (r.version > SCHEMA_VERSION) process.stdout.write(`note: the database is at version ${r.version}, newer than this postino's ${SCHEMA_VERSION}\n`);
  } finally {
    await pool.end();
  }
}
