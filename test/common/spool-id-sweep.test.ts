/*
 * The spool-id sweep keeps up with any sustained rate: one run forgets every
 * expired id, however many a busy hour left (it once stopped at 10,000 a run,
 * so above ~2.8 msg/s the keys piled up), and keeps every id not yet expired.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newQueueId } from '../../common/durable-queue.js';
import { SeenSpoolIds } from '../../common/spool-id.js';
import { Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

test('one sweep forgets all 25,000 expired ids of a busy hour, in small batches, and keeps the live ones', async () => {
  const TTL = 3_600_000;
  let now = 1_000_000;
  const store = await Store.open(tempDir('sid-sweep'));
  const seen = new SeenSpoolIds(store, TTL, () => now);
  const expired: string[] = [];
  for (let i = 0; i < 25_000; i += 1_000) {
    const ops = [];
    for (let j = 0; j < 1_000; j++) {
      const id = newQueueId();
      expired.push(id);
      ops.push(...seen.rememberOps('acme', id, `Q${i + j}`));
    }
    await store.commit(ops, { sync: false });
  }
  now += TTL + 1; // every id above has expired; the ones below have not
  const live = newQueueId();
  await store.commit(seen.rememberOps('acme', live, 'QL'), { sync: false });
  assert.equal(await seen.sweep(1_000), 25_000, 'every expired id in one run, 1,000 per batch');
  assert.equal(await seen.lookup('acme', live), 'QL');
  assert.equal(await seen.lookup('acme', expired[24_999]!), undefined);
  assert.deepEqual((await store.db.keys().all()).length, 2, 'only the live id and its expiry entry remain');
  assert.equal(await seen.sweep(), 0);
  await store.close();
});
