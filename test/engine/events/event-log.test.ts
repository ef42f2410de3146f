import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { tempDir } from '../../helpers/postino.js';

test('seq strictly increases, survives reopen, and readers never pass an unsettled event', async () => {
  const dir = tempDir('ev');
  let store = await Store.open(dir);
  let log = await EventLog.open(store);
  await log.append([{ type: 'accepted', account: 'a', queueId: 'q1' }]);
  const slow = log.prepare([{ type: 'delivered', account: 'a', queueId: 'q2' }]); // not committed yet
  await log.append([{ type: 'delivered', account: 'a', queueId: 'q3' }]);
  assert.deepEqual((await log.read(0, 10)).map((e) => e.queueId), ['q1'], 'q3 waits behind the unsettled q2');
  await store.commit(slow.ops, { sync: false });
  log.settle(slow);
  const all = await log.read(0, 10);
  assert.deepEqual(all.map((e) => [e.seq, e.queueId]), [[1, 'q1'], [2, 'q2'], [3, 'q3']]);
  assert.deepEqual((await log.read(2, 10)).map((e) => e.seq), [3], 'resumable by seq');
  await store.close();
  store = await Store.open(dir);
  log = await EventLog.open(store);
  const [next] = await log.append([{ type: 'opened', account: 'a' }]);
  assert.equal(next!.seq, 4, 'continues after reopen');
  await store.close();
});

test('the tail cache answers what LevelDB holds: gaps, out-of-order settles, eviction past 4,096 events, dropTail after a rewrite', async () => {
  const dir = tempDir('ev-tail');
  const store = await Store.open(dir);
  const log = await EventLog.open(store);
  // 5,000 events in batches of 10, one batch in 7 abandoned (a gap), one batch in 5 settled after the next one.
  let held: ReturnType<EventLog['prepare']> | undefined;
  for (let b = 0; b < 500; b++) {
    const p = log.prepare(Array.from({ length: 10 }, (_, i) => ({ type: 'accepted' as const, account: 'a', queueId: `q${b}-${i}` })));
    if (b % 7 === 3) {
      log.abandon(p);
      continue;
    }
    await store.commit(p.ops, { sync: false });
    if (b % 5 === 1) {
      held = p;
      continue;
    }
    log.settle(p);
    if (held) {
      log.settle(held);
      held = undefined;
    }
  }
  if (held) log.settle(held);
  const cached = async (after: number, limit: number) => (await log.read(after, limit)).map((e) => JSON.stringify(e));
  const stored = async (after: number, limit: number) => {
    const out: string[] = [];
    for await (const e of log.scan(after)) {
      out.push(JSON.stringify(e));
      if (out.length >= limit) break;
    }
    return out;
  };
  for (const [after, limit] of [[0, 100], [900, 50], [4500, 1000], [4990, 10], [3000, 2000], [5000, 10]] as const) {
    assert.deepEqual(await cached(after, limit), await stored(after, limit), `read(${after}, ${limit})`);
  }
  // A rewrite in place (as erasure does) is seen once the cache is dropped.
  const [last] = await log.read(4989, 1);
  await store.commit([{ type: 'put', key: `e!${String(last!.seq).padStart(16, '0')}`, value: Buffer.from(JSON.stringify({ ...last, recipient: 'erased' })) }], { sync: false });
  log.dropTail();
  assert.equal((await log.read(4989, 1))[0]!.recipient, 'erased');
  const [fresh] = await log.append([{ type: 'opened', account: 'a' }]);
  assert.deepEqual((await log.read(fresh!.seq - 1, 5)).map((e) => e.seq), [fresh!.seq], 'new events are served again after a drop');
  await store.close();
});
