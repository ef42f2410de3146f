/*
 * The durable queue's in-memory due index (issue #17): lease order is the order
 * of the due keys on disk whichever way they changed (every public method, ops
 * committed in another batch then a hook), over the cap (LevelDB scan path) and
 * back, after a crash, after failed commits, and a write that bypassed the store
 * is found by the safety-net check.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { DurableQueue, type QueueOptions, type QueueRecord } from '../../common/durable-queue.js';
import { Store, type StoreOptions } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

interface Meta {
  n: number;
}

function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

async function open(dir: string, opts: QueueOptions<Meta>, storeOpts: StoreOptions = {}): Promise<{ store: Store; q: DurableQueue<Meta> }> {
  const store = await Store.open(dir, storeOpts);
  return { store, q: await DurableQueue.open<Meta>(store, 'test', opts) };
}

/** The `n` of every message whose due key on disk is ≤ now, in key order: what a lease must hand out. */
async function diskOrder(store: Store, q: DurableQueue<Meta>, now: number): Promise<number[]> {
  const keys = await store.db.keys({ gte: 'q!test!d!', lt: `q!test!d!${String(now + 1).padStart(15, '0')}` }).all();
  const out: number[] = [];
  for (const k of keys) out.push((await q.get(k.slice(k.lastIndexOf('!') + 1)))!.meta.n);
  return out;
}

const body = Buffer.from('x');

for (const mode of ['in memory', 'LevelDB scan'] as const) {
  test(`lease order is due order after changes through every public method and through ops committed by another batch (${mode})`, async () => {
    let now = 10_000_000;
    const { store, q } = await open(tempDir('qi-order'), { clock: () => now, dueIndexMax: mode === 'in memory' ? 1_000 : 0 });
    const rec: Record<number, QueueRecord<Meta>> = {};
    // Enqueued with due times out of id order; 3 and 4 through ops in another batch + hook.
    for (const [n, due] of [[0, now + 50], [1, now + 10], [2, now]] as const) rec[n] = await q.enqueue({ meta: { n }, body, due });
    const p3 = await q.prepare({ meta: { n: 3 }, body, due: now - 5 });
    await q.commitPrepared([p3], [{ type: 'put', key: 'other!a', value: body }]);
    const p4 = await q.prepare({ meta: { n: 4 }, body, due: now + 20 });
    await store.commit([...p4.ops, { type: 'put', key: 'other!b', value: body }], { sync: true });
    q.added(1);
    for (let n = 5; n < 9; n++) rec[n] = await q.enqueue({ meta: { n }, body, due: now + n });
    assert.deepEqual(await diskOrder(store, q, now + 100), [3, 2, 5, 6, 7, 8, 1, 4, 0]);
    assert.deepEqual((await q.lease(3, 60_000)).map((r) => r.meta.n), [3, 2], 'only the due ones, due order');
    assert.equal(await q.nextDue(), now + 5);

    now += 8;
    const leased = await q.lease(10, 1_000); // 5, 6, 7, 8
    assert.deepEqual(leased.map((r) => r.meta.n), [5, 6, 7, 8]);
    const [l5, l6, l7, l8] = leased as [QueueRecord<Meta>, QueueRecord<Meta>, QueueRecord<Meta>, QueueRecord<Meta>];
    await q.nack(l5, now + 30, { n: 5 }); // public nack
    await q.release(l6, now - 100); // public release: first in line
    // nackOps in another batch + nacked (the delivery worker's deferral)
    await store.commit([...q.nackOps(l7, now + 1), { type: 'put', key: 'other!c', value: body }], { sync: false });
    q.nacked(l7);
    // updateMetaOps in another batch (the rewrap's progress), then failOps + failedMoved, then retryFailed
    const upd = q.updateMetaOps(l8, { n: 8 });
    await store.commit([...upd.ops, { type: 'put', key: 'other!d', value: body }], { sync: true });
    await store.commit([...q.failOps(upd.rec, 'boom', now), { type: 'put', key: 'other!e', value: body }], { sync: true });
    q.failedMoved(upd.rec);
    assert.equal(q.failedCount, 1);
    assert.deepEqual(await diskOrder(store, q, now + 1_000).then((o) => o.includes(8)), false, 'a failed record is out of the due index');
    assert.equal(await q.retryFailed(l8.id, now + 2), true);
    assert.equal(await q.reschedule(rec[0]!.id, now - 1), true); // 0 is due now
    assert.equal(await q.remove(rec[1]!.id), true); // 1 gone
    now += 40;
    const expected = await diskOrder(store, q, now);
    assert.deepEqual(expected, [6, 0, 7, 8, 4, 5], 'release, reschedule, nackOps, retryFailed, enqueued, nack');
    const got: number[] = [];
    for (let i = 0; i < 20; i++) {
      // The scan path reads on from its cursor for up to 250 ms (keys behind it wait that long): step past it.
      if (mode === 'LevelDB scan') now += 300;
      const batch = await q.lease(2, 60_000);
      if (batch.length === 0) break;
      got.push(...batch.map((r) => r.meta.n));
    }
    assert.deepEqual(got, expected, 'every due message leased once, in the order of the keys on disk');
    assert.deepEqual(got.sort(), [0, 4, 5, 6, 7, 8].sort());
    assert.equal(q.size, 8, '2 and 3 are leased, not acked; 1 removed; 8 failed and back');
    await store.close();
  });
}

test('over the cap: leases scan LevelDB (every message once, in due order), and the in-memory index is rebuilt once the queue is under half the cap', async () => {
  let now = 20_000_000;
  const { log, lines } = capture();
  const { store, q } = await open(tempDir('qi-cap'), { clock: () => now, dueIndexMax: 10, dueIndexCheckMs: 1_000_000 }, { log });
  // 25 messages due in a shuffled order, all due now: over the cap of 10 at the 11th.
  const dues = Array.from({ length: 25 }, (_, n) => (n * 7) % 25);
  for (const [n, d] of dues.entries()) await q.enqueue({ meta: { n }, body, due: now - 100 + d });
  assert.ok(lines.some((l) => l.event === 'due-index-over-cap'), 'the switch to the scan path is logged');
  const order: number[] = [];
  for (let i = 0; i < 40 && order.length < 25; i++) {
    const [r] = await q.lease(1, 60_000);
    if (!r) break;
    order.push(r.meta.n);
    await q.ack(r);
  }
  const byDue = [...dues.keys()].sort((a, b) => dues[a]! - dues[b]!);
  assert.deepEqual(order, byDue, 'each leased once, in due order, through the switch back');
  assert.equal(q.size, 0);
  assert.deepEqual(await q.lease(5, 60_000), []);
  // Back in memory: a due key written behind the store's back is not seen by a lease (the scan path would see it)...
  const bypass = await q.prepare({ meta: { n: 99 }, body, due: now });
  await store.db.batch(bypass.ops, { sync: false });
  assert.deepEqual(await q.lease(5, 60_000), [], 'the lease used the in-memory index, not a scan');
  // ...until the safety-net check finds it, with a warning.
  now += 1_000_001;
  assert.deepEqual((await q.lease(5, 60_000)).map((r) => r.meta.n), [99]);
  assert.ok(lines.some((l) => l.event === 'due-index-missed' && l.keys === 1), 'the check logs what it added');
  await store.close();
});

for (const cap of [1_000, 3]) {
  test(`after a crash every message leased before it is due at once (${cap === 3 ? 'over the cap' : 'in memory'})`, async () => {
    const dir = tempDir('qi-crash');
    let now = 30_000_000;
    let { store, q } = await open(dir, { clock: () => now, dueIndexMax: cap });
    for (let n = 0; n < 6; n++) await q.enqueue({ meta: { n }, body, due: now - 10 + n });
    await q.enqueue({ meta: { n: 6 }, body, due: now + 3_600_000 }); // scheduled: stays scheduled
    assert.equal((await q.lease(10, 3_600_000)).length, 6);
    await store.close(); // no ack, as if killed
    now += 1;
    ({ store, q } = await open(dir, { clock: () => now, dueIndexMax: cap }));
    assert.deepEqual((await q.lease(10, 60_000)).map((r) => r.meta.n).sort(), [0, 1, 2, 3, 4, 5]);
    assert.equal(await q.nextDue(), now + 60_000, 'the new leases are next, then the scheduled one');
    now += 3_600_000;
    assert.deepEqual((await q.lease(10, 60_000)).map((r) => r.meta.n).sort(), [0, 1, 2, 3, 4, 5, 6]);
    await store.close();
  });
}

test('failed commits (a full disk) leave nothing unleasable: a failed enqueue is not there, a failed lease or nack leaves the message leasable', async () => {
  let now = 40_000_000;
  let diskFull = false;
  const { log } = capture();
  const writeFault = (): Error | undefined => (diskFull ? Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }) : undefined);
  const { store, q } = await open(tempDir('qi-fault'), { clock: () => now }, { log, writeFault });
  const healthy = async (): Promise<void> => {
    for (let i = 0; i < 200 && !store.healthy; i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(store.healthy, 'the store reopened');
  };
  for (let n = 0; n < 3; n++) await q.enqueue({ meta: { n }, body });
  diskFull = true;
  await assert.rejects(q.lease(10, 60_000), 'the lease commit fails (the write fails: the store breaks)');
  await assert.rejects(q.enqueue({ meta: { n: 9 }, body }));
  diskFull = false;
  await healthy();
  // The reopen voided the in-memory index: this lease rebuilds it from a scan while enqueues commit.
  const [leased, ...late] = await Promise.all([q.lease(10, 60_000), ...[10, 11, 12].map((n) => q.enqueue({ meta: { n }, body, due: now + 1 }))]);
  assert.deepEqual(leased.map((r) => r.meta.n).slice(0, 3), [0, 1, 2], 'leasable after the failed lease; the failed enqueue is not there');
  now += 1;
  const lateLeased = [...leased.slice(3), ...(await q.lease(10, 60_000))];
  assert.deepEqual(lateLeased.map((r) => r.meta.n).sort(), [10, 11, 12], 'enqueues committed during the rebuild are in the index');
  for (const r of lateLeased) assert.equal(await q.ack(r), true);
  assert.equal(late.length, 3);
  diskFull = true;
  await assert.rejects(q.nack(leased[0]!, now));
  await assert.rejects(q.ack(leased[1]!));
  diskFull = false;
  await healthy();
  assert.deepEqual(await q.lease(10, 60_000), [], 'still leased (the failed nack and ack changed nothing)');
  now += 60_001;
  const again = await q.lease(10, 60_000);
  assert.deepEqual(again.map((r) => r.meta.n), [0, 1, 2], 'due again when the leases expire');
  for (const r of again) assert.equal(await q.ack(r), true);
  assert.equal(q.size, 0);
  await store.close();
});

test('SortedKeys (the index itself) agrees with a sorted array through 30,000 random adds and deletes, across chunk splits', async () => {
  const { SortedKeys } = await import('../../common/sorted-keys.js');
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const key = (): string => `${String(rand(5_000)).padStart(15, '0')}!${rand(4).toString(36)}`;
  const s = SortedKeys.fromSorted(['000000000000001!a', '000000000000002!a']);
  const ref = new Set(['000000000000001!a', '000000000000002!a']);
  for (let i = 0; i < 30_000; i++) {
    const k = key();
    // Mostly adds first (past several chunk splits), then mostly deletes.
    if (rand(10) < (i < 15_000 ? 8 : 2)) assert.equal(s.add(k), !ref.has(k) && Boolean(ref.add(k)));
    else assert.equal(s.delete(k), ref.delete(k));
    if (i % 997 === 0) {
      const sorted = [...ref].sort();
      assert.equal(s.size, sorted.length);
      assert.equal(s.first(), sorted[0]);
      const bound = key();
      assert.deepEqual(s.below(bound, 50), sorted.filter((x) => x < bound).slice(0, 50));
      assert.equal(s.has(k), ref.has(k));
    }
  }
  assert.deepEqual(s.below('~', Infinity), [...ref].sort());
});
