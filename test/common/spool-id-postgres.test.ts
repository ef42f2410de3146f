/*
 * Spool ids shared by two nodes through PostgreSQL (common/spool-id-postgres.ts),
 * each node with its own LevelDB, on this file's own cluster: claim, confirm,
 * release, a dead node's claim taken over, an outage (parked, written later),
 * and a node that crashed between its batch and its confirm (reconcile).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { PgSpoolIds } from '../../common/spool-id-postgres.js';
import { SeenSpoolIds } from '../../common/spool-id.js';
import { migrate } from '../../common/storage/postgres/migrations.js';
import { openPool, type PgPool } from '../../common/storage/postgres/pool.js';
import { Store } from '../../common/store.js';
import { clusterForFile } from '../helpers/postgres.js';
import { tempDir } from '../helpers/postino.js';

const pgFile = clusterForFile();
const skip = pgFile.skip;
const TTL = 7 * 86_400_000;
const silent = createLogger('test', 'silent');

interface Node {
  store: Store;
  pool: PgPool;
  ids: PgSpoolIds;
  close(): Promise<void>;
}

async function twoNodes(): Promise<[Node, Node]> {
  const url = await pgFile.cluster().newDatabase();
  const make = async (): Promise<Node> => {
    const dir = tempDir('sid-pg');
    const store = await Store.open(dir);
    const pool = openPool({ url, poolSize: 4, connectTimeoutSeconds: 2, queryTimeoutSeconds: 5 }, silent);
    const ids = new PgSpoolIds(pool, store, TTL, silent);
    return {
      store,
      pool,
      ids,
      async close() {
        await ids.close();
        await pool.end();
        await store.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  };
  const a = await make();
  await migrate(a.pool);
  return [a, await make()];
}

test('claim on A, B waits until A confirms, then answers with A\'s queue id; a released claim and an expired one are free again', { skip }, async () => {
  const [a, b] = await twoNodes();
  try {
    assert.deepEqual(await a.ids.claim('acme', 'S1', 'QA1'), { kind: 'new' });
    // B's retry waits on A's claim (its reply held) and gets A's queue id once A confirms.
    const waiting = b.ids.claim('acme', 'S1', 'QB1');
    assert.deepEqual(await b.ids.claim('other', 'S1', 'QB2'), { kind: 'new' }, 'another account\'s id is its own');
    await new Promise((r) => setTimeout(r, 600));
    await a.ids.confirm('acme', 'S1', 'QA1');
    assert.deepEqual(await waiting, { kind: 'earlier', queueId: 'QA1' });
    assert.deepEqual(await b.ids.claim('acme', 'S1', 'QB3'), { kind: 'earlier', queueId: 'QA1' });

    await a.ids.claim('acme', 'S2', 'QA2');
    await a.ids.release('acme', 'S2'); // A's batch failed
    assert.deepEqual(await b.ids.claim('acme', 'S2', 'QB4'), { kind: 'new' });

    // A dies between claim and confirm: B's retry waits, and takes the message once the claim has expired.
    await a.ids.claim('acme', 'S3', 'QA3');
    const takeover = b.ids.claim('acme', 'S3', 'QB5');
    await new Promise((r) => setTimeout(r, 600));
    await a.pool.query(`UPDATE spool_ids SET expires = now() - interval '1 second' WHERE spool_id = 'S3'`);
    assert.deepEqual(await takeover, { kind: 'new' });
    assert.equal(await a.ids.sweep(), 0, 'nothing expired left to sweep');
  } finally {
    await b.close();
    await a.close();
  }
});

test('PostgreSQL stopped: the claim says unavailable, the confirm is parked and reaches node B when it returns', { skip }, async () => {
  const [a, b] = await twoNodes();
  try {
    await pgFile.cluster().stop();
    assert.deepEqual(await a.ids.claim('acme', 'S9', 'QA9'), { kind: 'unavailable' });
    await a.ids.confirm('acme', 'S9', 'QA9');
    assert.equal((await a.store.db.keys({ gte: 'sidp!', lt: 'sidp!~' }).all()).length, 1);
    await pgFile.cluster().start();
    await a.ids.flushParked();
    assert.deepEqual(await a.store.db.keys({ gte: 'sidp!', lt: 'sidp!~' }).all(), []);
    assert.deepEqual(await b.ids.claim('acme', 'S9', 'QB9'), { kind: 'earlier', queueId: 'QA9' });
  } finally {
    if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
    await b.close();
    await a.close();
  }
});

test('a node that crashed after its batch but before its confirm writes its recent ids at start (reconcile)', { skip }, async () => {
  const [a, b] = await twoNodes();
  try {
    const seen = new SeenSpoolIds(a.store, TTL);
    assert.deepEqual(await a.ids.claim('acme', 'S7', 'QA7'), { kind: 'new' });
    await a.store.commit(seen.rememberOps('acme', 'S7', 'QA7'), { sync: true }); // the enqueue batch… and no confirm
    await a.pool.query(`UPDATE spool_ids SET expires = now() - interval '1 second' WHERE spool_id = 'S7'`); // the claim ran out
    assert.equal(await a.ids.reconcile(), 1);
    assert.deepEqual(await b.ids.claim('acme', 'S7', 'QB7'), { kind: 'earlier', queueId: 'QA7' });
  } finally {
    await b.close();
    await a.close();
  }
});
