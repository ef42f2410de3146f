/*
 * DeadLetter through a WorkerLoop on a real queue with a fake clock: a handler
 * that always throws ends in the failed records with one `failed` event after
 * maxAttempts, backing off between attempts, never leased again; the message
 * behind it is not held up; a failed record can be retried and deleted.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { DeadLetter, type AttemptLimit } from '../../common/dead-letter.js';
import type { DurableQueue, QueueRecord } from '../../common/durable-queue.js';
import { WorkerLoop } from '../../common/worker-loop.js';
import { FakeClock, until } from '../helpers/fake-clock.js';
import { silentLog, tempQueue } from '../helpers/temp-queue.js';

interface Meta {
  n: number;
}

const LIMIT: AttemptLimit = { maxAttempts: 3, backoffMs: [10_000, 60_000] };

/** Messages 1..count; message 1 is poison (its handler throws), the rest are acked. */
async function setup(t: TestContext, count: number, countLeases = true) {
  const clock = new FakeClock();
  const { store, q } = await tempQueue<Meta>('dead-letter', clock.now);
  const ids: string[] = [];
  for (let n = 1; n <= count; n++) ids.push((await q.enqueue({ meta: { n }, body: Buffer.from(`m${n}`) })).id);
  const tries: number[] = [];
  const done: number[] = [];
  const failedEvents: Array<{ id: string; reason: string }> = [];
  const dead = new DeadLetter<Meta>({
    queue: q,
    limit: LIMIT,
    countLeases,
    clock: clock.now,
    log: silentLog,
    failedEvents: (rec, reason) => ({ ops: [], settle: () => failedEvents.push({ id: rec.id, reason }), abandon: () => undefined }),
  });
  const handle = async (rec: QueueRecord<Meta>): Promise<void> => {
    tries.push(rec.meta.n);
    if (rec.meta.n === 1) throw new RangeError('Invalid time value');
    await q.ack(rec);
    done.push(rec.meta.n);
  };
  const loop = new WorkerLoop<Meta>({ queue: q, concurrency: 1, visibilityMs: 600_000, handle, log: silentLog, idleWaitMs: 5, clock: clock.now, timers: clock, deadLetter: dead });
  t.after(async () => {
    await loop.stop();
    await store.close();
  });
  return { clock, q, loop, ids, tries, done, failedEvents };
}

async function failedIds(q: DurableQueue<Meta>): Promise<string[]> {
  const out: string[] = [];
  for await (const r of q.failedRecords()) out.push(r.id);
  return out;
}

test('a handler that always throws: failed after maxAttempts with one event naming the error, backing off 10 s then 60 s, never tried again', async (t) => {
  const { clock, q, loop, ids, tries, failedEvents } = await setup(t, 1);
  loop.start();
  await until(() => tries.length === 1, 'first attempt');
  await until(async () => (await q.get(ids[0]!))?.leasedUntil === 0, 'given back');
  assert.equal((await q.get(ids[0]!))!.due, clock.now() + 10_000, 'first backoff 10 s');
  clock.advance(9_999);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(tries.length, 1, 'not before its backoff');
  clock.advance(1);
  await until(() => tries.length === 2, 'second attempt');
  await until(async () => (await q.get(ids[0]!))?.leasedUntil === 0, 'given back again');
  assert.equal((await q.get(ids[0]!))!.due, clock.now() + 60_000, 'second backoff 60 s');
  clock.advance(60_000);
  await until(() => failedEvents.length === 1, 'moved to failed');
  assert.equal(tries.length, 3);
  assert.deepEqual(await failedIds(q), [ids[0]]);
  assert.equal(q.failedCount, 1);
  assert.equal(q.size, 0, 'no longer in the queue');
  assert.match(failedEvents[0]!.reason, /gave up after 3 attempts.*RangeError: Invalid time value/);
  const dead = (await q.getFailed(ids[0]!))!;
  assert.equal(dead.failures, 3);
  assert.match(dead.lastError!, /Invalid time value/);
  for (let i = 0; i < 10; i++) clock.advance(3_600_000);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(tries.length, 3, 'never retried forever');
});

test('the message behind a poison message is handled in the poison one\'s backoff, not after its attempts', async (t) => {
  const { clock, loop, tries, done } = await setup(t, 2);
  loop.start();
  await until(() => done.length === 1, 'message 2 handled');
  assert.deepEqual(tries, [1, 2], 'one poison attempt, then the next message at once');
  assert.equal(clock.now(), new FakeClock().now(), 'without waiting for any backoff');
});

test('a failed record retried is due now with a fresh count, and deleted it is gone with its body', async (t) => {
  const { clock, q, loop, ids, tries, failedEvents } = await setup(t, 1);
  loop.start();
  /** Drives three attempts (backoffs 10 s, 60 s) from `tries` done so far to the `failed` move. */
  const threeAttempts = async (from: number): Promise<void> => {
    for (const [i, backoff] of [10_000, 60_000].entries()) {
      await until(() => tries.length === from + i + 1, `attempt ${from + i + 1}`);
      await until(async () => (await q.get(ids[0]!))?.leasedUntil === 0, 'given back');
      clock.advance(backoff);
    }
    await until(() => failedEvents.length === from / 3 + 1, 'failed');
  };
  await threeAttempts(0);
  assert.equal(await q.retryFailed(ids[0]!, clock.now()), true);
  assert.equal(q.failedCount, 0);
  await threeAttempts(3);
  assert.equal(tries.length, 6);
  await loop.stop();
  assert.equal(await q.deleteFailed(ids[0]!), true);
  assert.equal(await q.deleteFailed(ids[0]!), false, 'unknown the second time');
  assert.equal(q.failedCount, 0);
  assert.equal(await q.store.db.get(`q!dead-letter!b!${ids[0]}`), undefined, 'body deleted');
});

test('without countLeases (delivery) only handler failures count: leases after ordinary give-backs do not', async (t) => {
  const { q, ids } = await setup(t, 1, false);
  const dead = new DeadLetter<Meta>({ queue: q, limit: LIMIT, countLeases: false, log: silentLog, failedEvents: () => ({ ops: [], settle: () => undefined, abandon: () => undefined }) });
  for (let i = 0; i < 5; i++) {
    const [rec] = await q.lease(1, 1000);
    await q.nack(rec!, 0); // a 4xx retry
  }
  const [rec] = await q.lease(1, 1000);
  assert.equal(rec!.attempts, 6);
  assert.equal(await dead.crashed(rec!, new Error('boom')), 'retry', 'first failure of a copy leased six times');
  assert.equal((await q.get(ids[0]!))!.failures, 1);
});

test('progress a handler committed in the record before it threw (the rewrap\'s resumeAt) is kept when the message is given back', async (t) => {
  const { q, ids } = await setup(t, 1);
  const dead = new DeadLetter<Meta>({ queue: q, limit: LIMIT, countLeases: true, log: silentLog, failedEvents: () => ({ ops: [], settle: () => undefined, abandon: () => undefined }) });
  const [rec] = await q.lease(1, 1000);
  const upd = q.updateMetaOps(rec!, { n: 42 });
  await q.store.commit(upd.ops, { sync: true });
  assert.equal(await dead.crashed(rec!, new Error('after the first batch')), 'retry');
  const back = (await q.get(ids[0]!))!;
  assert.equal(back.meta.n, 42, 'the stale leased copy of the meta did not overwrite it');
  assert.equal(back.leasedUntil, 0);
});
