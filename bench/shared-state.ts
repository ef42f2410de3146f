/*
 * npm run bench -- shared-state: what moving shared state to PostgreSQL
 * (storage.postgres) costs per operation, beside the node's own LevelDB, on
 * the same machine: a suppression list of 200,000 entries imported (the
 * import path of the API), the rewrap's check of 500 recipients (one
 * checkMany), the delivery worker's check of one, and a quota count of one
 * message. PostgreSQL is a cluster of the bench's own (test/helpers/postgres.ts)
 * on loopback, fsync on: a network hop to a real database adds its round trip.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { createLogger } from '../common/log.js';
import { migrate } from '../common/storage/postgres/migrations.js';
import { openPool } from '../common/storage/postgres/pool.js';
import { Store } from '../common/store.js';
import { importSuppressionCsv } from '../engine/suppression-routes.js';
import { PgSuppressionList } from '../engine/suppression-postgres.js';
import { LevelSuppressionList, type SuppressionList } from '../engine/suppression.js';
import { PgQuotas } from '../listener/quota-postgres.js';
import { Quotas, type QuotaCounter } from '../listener/quota.js';
import { postgresMissing, startPostgres } from '../test/helpers/postgres.js';
import { tempDir } from '../test/helpers/postino.js';
import { fmt } from './stats.js';

const ROWS = 200_000;
const CHECKS = 200;
const BATCH = 500;
const QUOTA_MESSAGES = 2_000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(name: string, list: SuppressionList, store: Store, quotas: QuotaCounter): Promise<string[]> {
  const rows = ['address', ...Array.from({ length: ROWS }, (_, i) => `customer.${i}@shop-${i % 997}.example.com`)].join('\n') + '\n';
  // Warm-up (CSV parser and import path compiled) in another account, so the first backend measured pays no JIT.
  await importSuppressionCsv({ store, suppression: list }, 'warmup', 'manual', Readable.from([rows.slice(0, rows.length / 10)]));
  let t0 = performance.now();
  const r = await importSuppressionCsv({ store, suppression: list }, 'default', 'manual', Readable.from([rows]));
  const importMs = performance.now() - t0;
  const many: number[] = [];
  const one: number[] = [];
  for (let i = 0; i < CHECKS; i++) {
    const from = (i * 7919) % (ROWS * 2 - BATCH); // half of them suppressed
    const batch = Array.from({ length: BATCH }, (_, j) => ({ address: `customer.${from + j}@shop-${(from + j) % 997}.example.com`, stream: 'bulk' as const }));
    t0 = performance.now();
    await list.checkMany('default', batch);
    many.push(performance.now() - t0);
    t0 = performance.now();
    await list.check('default', batch[0]!.address, { stream: 'bulk' });
    one.push(performance.now() - t0);
  }
  t0 = performance.now();
  for (let i = 0; i < QUOTA_MESSAGES; i++) {
    const res = await quotas.reserve('default');
    await store.commit(res.ops, { sync: false });
    res.done(true);
  }
  const quotaMs = (performance.now() - t0) / QUOTA_MESSAGES;
  return [
    name,
    `${Math.round(r.imported / (importMs / 1000)).toLocaleString('en')}/s`,
    `${fmt(median(many), 2)} ms`,
    `${fmt(median(one), 3)} ms`,
    `${fmt(quotaMs, 3)} ms`,
  ];
}

export async function benchSharedState(): Promise<void> {
  const log = createLogger('bench', 'silent');
  const table: string[][] = [['backend', `import (${ROWS.toLocaleString('en')} rows)`, `checkMany(${BATCH}) p50`, 'check(1) p50', 'quota count/msg']];
  const limits = [{ id: 'default', perHour: 1_000_000, perDay: 0 }];
  {
    const dir = tempDir('bench-shared-level');
    const store = await Store.open(dir);
    try {
      table.push(await measure('LevelDB', new LevelSuppressionList(store), store, await Quotas.open(store, limits)));
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const missing = postgresMissing();
  if (missing) {
    console.log(`PostgreSQL: skipped (${missing})`);
  } else {
    const cluster = await startPostgres();
    const dir = tempDir('bench-shared-pg');
    const store = await Store.open(dir);
    const pool = openPool({ url: await cluster.newDatabase(), poolSize: 10, connectTimeoutSeconds: 5, queryTimeoutSeconds: 60 }, log);
    try {
      await migrate(pool);
      const list = new PgSuppressionList(pool, store, log);
      const quotas = new PgQuotas(pool, limits, Date.now, log);
      table.push(await measure('PostgreSQL 15 (loopback)', list, store, quotas));
      await list.close();
      await quotas.close();
    } finally {
      await pool.end();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
      await cluster.close();
    }
  }
  for (const row of table) console.log(row.map((c, i) => c.padEnd(i === 0 ? 26 : 24)).join(''));
}
