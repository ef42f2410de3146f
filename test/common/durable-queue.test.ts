import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { BodyTooLargeError, DurableQueue } from '../../common/durable-queue.js';
import { BLOB_READ_BYTES, Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

interface Meta {
  n: number;
}

async function open(dir: string, clock?: () => number, inlineMaxBytes?: number): Promise<{ store: Store; q: DurableQueue<Meta> }> {
  const store = await Store.open(dir);
  const q = await DurableQueue.open<Meta>(store, 'test', { clock, inlineMaxBytes });
  return { store, q };
}

test('enqueue, lease, ack: a message is handed out once and gone after ack', async () => {
  const { store, q } = await open(tempDir('q1'));
  const rec = await q.enqueue({ meta: { n: 1 }, body: Buffer.from('hello') });
  assert.equal(q.size, 1);
  const [leased, ...rest] = await q.lease(10, 60_000);
  assert.equal(rest.length, 0);
  assert.equal(leased!.id, rec.id);
  assert.equal(leased!.attempts, 1);
  assert.equal((await q.readBody(leased!)).toString(), 'hello');
  assert.deepEqual(await q.lease(10, 60_000), [], 'a leased message is invisible');
  assert.equal(await q.ack(leased!), true);
  assert.equal(q.size, 0);
  assert.equal(await q.get(rec.id), undefined);
  await store.close();
});

test('visibility timeout: an unacked lease comes back, and the stale holder cannot ack', async () => {
  let now = 1_000_000;
  const { store, q } = await open(tempDir('q2'), () => now);
  await q.enqueue({ meta: { n: 1 }, body: Buffer.from('x') });
  const [first] = await q.lease(1, 5_000);
  now += 4_999;
  assert.equal((await q.lease(1, 5_000)).length, 0, 'still invisible before the timeout');
  now += 2;
  const [second] = await q.lease(1, 5_000);
  assert.equal(second!.id, first!.id, 'visible again after the timeout');
  assert.equal(second!.attempts, 2);
  assert.equal(await q.ack(first!), false, 'the expired lease cannot ack');
  assert.equal(await q.ack(second!), true);
  await store.close();
});

test('due time: nack with a future due time hides the message until then; nextDue finds it in one seek', async () => {
  let now = 5_000_000;
  const { store, q } = await open(tempDir('q3'), () => now);
  await q.enqueue({ meta: { n: 1 }, body: Buffer.from('a') });
  await q.enqueue({ meta: { n: 2 }, body: Buffer.from('b'), due: now + 60_000 });
  const [a] = await q.lease(10, 1_000);
  assert.equal(a!.meta.n, 1, 'only the due message is leased');
  await q.nack(a!, now + 30_000, { n: 11 });
  assert.equal(await q.nextDue(), now + 30_000);
  now += 30_000;
  const [again] = await q.lease(10, 1_000);
  assert.equal(again!.meta.n, 11, 'nack updated the metadata');
  await q.ack(again!);
  now += 30_000;
  assert.equal((await q.lease(10, 1_000)).length, 1, 'the scheduled one is due now');
  await store.close();
});

test('crash recovery: messages leased when the process died are due at once after reopen', async () => {
  const dir = tempDir('q4');
  let { store, q } = await open(dir);
  await q.enqueue({ meta: { n: 1 }, body: Buffer.from('a') });
  await q.enqueue({ meta: { n: 2 }, body: Buffer.from('b') });
  const leased = await q.lease(10, 3_600_000);
  assert.equal(leased.length, 2);
  await store.close(); // no ack: as if killed
  ({ store, q } = await open(dir));
  assert.equal(q.size, 2, 'both still there');
  const back = await q.lease(10, 1_000);
  assert.equal(back.length, 2, 'both due again immediately, not after the hour-long lease');
  await store.close();
});

test('large bodies stream to an fsynced file, are read back as a stream, and the file goes with ack', async () => {
  const dir = tempDir('q5');
  const { store, q } = await open(dir, undefined, 1024);
  const big = Buffer.alloc(3 * 1024 * 1024 + 7, 'z');
  const chunks = Array.from({ length: 50 }, (_, i) => big.subarray(i * 63_000, (i + 1) * 63_000)).filter((c) => c.length);
  const tail = big.subarray(50 * 63_000);
  const rec = await q.enqueue({ meta: { n: 1 }, body: Readable.from([...chunks, tail]) });
  assert.equal(rec.body.kind, 'file');
  assert.equal(rec.body.size, big.length);
  const small = await q.enqueue({ meta: { n: 2 }, body: Readable.from([Buffer.from('tiny')]) });
  assert.equal(small.body.kind, 'inline');
  const [l1, l2] = await q.lease(2, 60_000);
  const parts: Buffer[] = [];
  for await (const c of await q.openBody(l1!)) parts.push(c as Buffer);
  assert.ok(Buffer.concat(parts).equals(big));
  // In BLOB_READ_BYTES reads (one thread-pool trip each), not Node's default 64 KiB.
  assert.equal(parts.length, Math.ceil(big.length / BLOB_READ_BYTES));
  // What a sender is handed: the file as a stream, never loaded; the inline body as its Buffer.
  const sendable = await q.sendableBody(l1!);
  assert.ok(!Array.isArray(sendable), 'a file body is streamed');
  sendable.destroy();
  assert.deepEqual(await q.sendableBody(l2!), [Buffer.from('tiny')]);
  await q.ack(l1!);
  await q.ack(l2!);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'blobs')), [], 'blob file removed');
  await store.close();
});

for (const kind of ['inline', 'file'] as const) {
  test(`a handed-over ${kind} body: the next queue holds a head and refers to the first record's bytes; they go with the record that took them, through ack and through a deleted failed record`, async () => {
    const dir = tempDir(`q-tail-${kind}`);
    const { store, q } = await open(dir, undefined, kind === 'file' ? 1024 : undefined);
    const next = await DurableQueue.open<Meta>(store, 'next');
    const original = Buffer.from('Subject: one\r\n\r\n' + 'body line\r\n'.repeat(500));
    const start = original.indexOf('\r\n\r\n') + 4;
    const blobs = (): string[] => fs.readdirSync(path.join(dir, 'blobs'));
    /** Whether the first record's bytes are still stored. */
    const held = (h: ReturnType<typeof q.handOver>): boolean => ('key' in h ? store.getNow(h.key) !== undefined : blobs().includes(h.file));
    const take = async (n: number): Promise<{ rec: Awaited<ReturnType<typeof next.enqueue>>; h: ReturnType<typeof q.handOver>; expected: Buffer }> => {
      await q.enqueue({ meta: { n }, body: original });
      const [first] = await q.lease(1, 60_000);
      assert.equal(first!.body.kind, kind);
      const h = q.handOver(first!, start);
      // A copy prepared and then given up (a failed commit, a lost lease) leaves the body to its owner.
      await (await next.prepare({ meta: { n }, body: Buffer.from('X-Abandoned: 1\r\n\r\n'), tail: h })).discard();
      assert.deepEqual(await q.readBody(first!), original, 'a discarded hand-over leaves the body where it was');
      const head = Buffer.from(`X-Copy: ${n}\r\nSubject: one\r\n\r\n`);
      const p = await next.prepare({ meta: { n }, body: head, tail: h });
      // One batch: the first record leaves without its body, the next one arrives referring to it.
      assert.equal(await q.ack(first!, p.ops, true, true), true);
      next.added(1);
      assert.equal(p.record.body.size, head.length + original.length - start);
      assert.throws(() => next.handOver(p.record, 0), /only a body of its own/);
      const expected = Buffer.concat([head, original.subarray(start)]);
      assert.deepEqual(await next.readBody(p.record), expected);
      const sendable = await next.sendableBody(p.record);
      if (p.record.body.kind === 'inline') assert.equal((sendable as Buffer[]).length, 2, 'the head and the other record\'s bytes, not copied into one');
      const streamed: Buffer[] = [];
      if (Buffer.isBuffer(sendable)) streamed.push(sendable);
      else for await (const c of sendable) streamed.push(c as Buffer);
      assert.deepEqual(Buffer.concat(streamed), expected);
      const opened: Buffer[] = [];
      for await (const c of await next.openBody(p.record)) opened.push(c as Buffer);
      assert.deepEqual(Buffer.concat(opened), expected);
      assert.ok(held(h), 'the first record is gone, its body is not');
      return { rec: p.record, h, expected };
    };
    const a = await take(1);
    const [leased] = await next.lease(1, 60_000);
    assert.equal(leased!.id, a.rec.id);
    await next.ack(leased!);
    assert.equal(held(a.h), false, 'acked: the handed-over body went with it');
    const b = await take(2);
    const [failing] = await next.lease(1, 60_000);
    await store.commit(next.failOps(failing!, 'boom', Date.now()), { sync: true });
    next.failedMoved(failing!);
    assert.deepEqual(await next.readBody((await next.getFailed(b.rec.id))!), b.expected, 'a failed record keeps it');
    assert.equal(await next.deleteFailed(b.rec.id), true);
    assert.equal(held(b.h), false, 'deleted: the handed-over body went with it');
    assert.deepEqual(blobs(), []);
    // A head and tail over maxBytes is refused like any body.
    await assert.rejects(next.prepare({ meta: { n: 3 }, body: Buffer.from('h'), tail: { ...b.h, start: 0, size: 10 }, maxBytes: 10 }), BodyTooLargeError);
    await store.close();
  });
}

test('a body over maxBytes is refused and leaves nothing behind', async () => {
  const dir = tempDir('q6');
  const { store, q } = await open(dir, undefined, 1024);
  await assert.rejects(q.enqueue({ meta: { n: 1 }, body: Readable.from([Buffer.alloc(4000), Buffer.alloc(4000)]), maxBytes: 5000 }), BodyTooLargeError);
  assert.equal(q.size, 0);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'blobs')), []);
  await store.close();
});

test('inline budget: bodies read at the same time hold at most the budget; past it a body goes to a file, and every body is intact', async () => {
  const dir = tempDir('q6b');
  const store = await Store.open(dir);
  const q = await DurableQueue.open<Meta>(store, 'test', { inlineMaxBytes: 64 * 1024, inlineBudgetBytes: 100 * 1024 });
  const piece = (i: number): Buffer => Buffer.alloc(40 * 1024, 65 + i);
  const streams = [0, 1, 2, 3].map(() => new PassThrough());
  const pending = streams.map((body, i) => q.enqueue({ meta: { n: i }, body }));
  // One 40 KiB chunk each, in turn, each read before the next is written: 2 × 40 KiB fit in 100 KiB, the third does not.
  for (const [i, s] of streams.entries()) {
    s.write(piece(i));
    for (let t = 0; t < 100 && s.readableLength > 0; t++) await new Promise((r) => setImmediate(r));
  }
  for (const [i, s] of streams.entries()) s.end(piece(i).subarray(0, 10));
  const recs = await Promise.all(pending);
  assert.deepEqual(recs.map((r) => r.body.kind), ['inline', 'inline', 'file', 'file']);
  for (const [i, r] of recs.entries()) assert.ok((await q.readBody(r)).equals(Buffer.concat([piece(i), piece(i).subarray(0, 10)])), `body ${i}`);
  // Refused (too large) or finished, a body gives its share back: the whole budget is free again.
  await assert.rejects(q.enqueue({ meta: { n: 9 }, body: Readable.from([piece(0), piece(0)]), maxBytes: 50 * 1024 }), BodyTooLargeError);
  const again = await Promise.all([0, 1].map((i) => q.enqueue({ meta: { n: 10 + i }, body: Readable.from([piece(i)]) })));
  assert.deepEqual(again.map((r) => r.body.kind), ['inline', 'inline']);
  await store.close();
});

test('group commit: 200 concurrent enqueues share far fewer synced batches', async () => {
  const { store, q } = await open(tempDir('q7'));
  const before = store.stats.syncedBatches;
  await Promise.all(Array.from({ length: 200 }, (_, n) => q.enqueue({ meta: { n }, body: Buffer.alloc(4096, n) })));
  const batches = store.stats.syncedBatches - before;
  assert.equal(q.size, 200);
  assert.ok(batches < 50, `200 enqueues took ${batches} synced batches`);
  await store.close();
});

test('waitForWork wakes on enqueue instead of sleeping out its timeout', async () => {
  const { store, q } = await open(tempDir('q8'));
  const t0 = Date.now();
  const waiting = q.waitForWork(10_000);
  setTimeout(() => void q.enqueue({ meta: { n: 1 }, body: Buffer.from('x') }), 50);
  await waiting;
  assert.ok(Date.now() - t0 < 2_000);
  await store.close();
});

test('LevelDB scan path (over the due index cap): a message that lands behind the lease scan cursor is still leased: at once when nothing is ahead, within 250 ms otherwise', async () => {
  let now = 5_000_000;
  const store = await Store.open(tempDir('q-cursor'));
  const q = await DurableQueue.open<Meta>(store, 'test', { clock: () => now, dueIndexMax: 0 });
  for (let n = 0; n < 3; n++) await q.enqueue({ meta: { n }, body: Buffer.from('x'), due: now - 10 + n });
  const first = await q.lease(3, 60_000); // the cursor now sits at the third due key
  assert.deepEqual(first.map((r) => r.meta.n), [0, 1, 2]);
  // A due time before the cursor (a late commit or a clock step back) with nothing after it:
  await q.enqueue({ meta: { n: 3 }, body: Buffer.from('x'), due: now - 100 });
  assert.deepEqual((await q.lease(5, 60_000)).map((r) => r.meta.n), [3], 'found by the fallback scan from the start');
  // One behind the cursor while others keep arriving ahead of it: those first, the straggler once the full-scan interval is up.
  now += 1;
  await q.enqueue({ meta: { n: 4 }, body: Buffer.from('x'), due: now });
  assert.deepEqual((await q.lease(1, 60_000)).map((r) => r.meta.n), [4]);
  const fullScanDue = now + 250;
  await q.enqueue({ meta: { n: 5 }, body: Buffer.from('x'), due: now - 1_000 });
  for (const n of [6, 7, 8, 9]) await q.enqueue({ meta: { n }, body: Buffer.from('x'), due: now });
  const order: Array<{ n: number; at: number }> = [];
  for (let i = 0; i < 6; i++) {
    for (const r of await q.lease(1, 60_000)) order.push({ n: r.meta.n, at: now });
    now += 100;
  }
  assert.deepEqual(order.map((o) => o.n), [6, 7, 8, 5, 9]);
  assert.ok(order.find((o) => o.n === 5)!.at <= fullScanDue + 100, 'the straggler waited no longer than the interval (plus one step)');
  await store.close();
});

test('tally: waiting records given back with an error are counted through lease, nack, remove and reopen; oldest is one seek', async () => {
  type M = { n: number; err?: string };
  const dir = tempDir('q-tally');
  let now = 7_000_000;
  const opts = { clock: () => now, tally: (r: { meta: M }) => r.meta.err !== undefined };
  let store = await Store.open(dir);
  let q = await DurableQueue.open<M>(store, 'test', opts);
  const recs = [];
  for (let n = 0; n < 4; n++) {
    recs.push(await q.enqueue({ meta: { n }, body: Buffer.from('x') }));
    now += 1;
  }
  assert.equal((await q.oldest())!.id, recs[0]!.id);
  assert.equal(q.tallied, 0, 'new records are not counted');
  const leased = await q.lease(4, 60_000);
  await q.nack(leased[0]!, now + 10_000, { n: 0, err: '451' });
  await q.nack(leased[1]!, now, { n: 1, err: '451' });
  await q.nack(leased[2]!, now); // given back without an error: not counted
  assert.equal(q.tallied, 2);
  const again = await q.lease(4, 60_000); // only n=1 and n=2 are due
  assert.deepEqual(again.map((r) => r.meta.n).sort(), [1, 2]);
  assert.equal(q.tallied, 1, 'a leased record is in flight, not deferred');
  assert.equal(await q.remove(recs[0]!.id), true);
  assert.equal(q.tallied, 0);
  await store.close();
  // Reopen as after a crash: the leases are void, n=1 (with its error) is waiting again.
  store = await Store.open(dir);
  q = await DurableQueue.open<M>(store, 'test', opts);
  assert.equal(q.size, 3);
  assert.equal(q.tallied, 1);
  assert.equal((await q.oldest())!.meta.n, 1, 'n=0 was removed');
  await store.close();
});

test('a meta made once the body is read: it sees what the body stream found; one that throws leaves no blob file behind', async () => {
  const dir = tempDir('q-meta-after');
  const { store, q } = await open(dir, undefined, 1024);
  // A stream of many small chunks past the inline limit: spilled to a file, batch by batch.
  const chunks = Array.from({ length: 3000 }, (_, i) => Buffer.from(`line ${i}\r\n`));
  let seen = 0;
  const body = Readable.from(chunks, { objectMode: false });
  const counted = new PassThrough();
  body.on('data', (c: Buffer) => (seen += c.length)).pipe(counted);
  const p = await q.prepare({ meta: () => ({ n: seen }), body: counted });
  const total = chunks.reduce((n, c) => n + c.length, 0);
  assert.equal(p.record.meta.n, total, 'made after the whole body went through');
  assert.equal(p.record.body.kind, 'file');
  await q.commitPrepared([p]);
  const [rec] = await q.lease(1, 60_000);
  assert.ok((await q.readBody(rec!)).equals(Buffer.concat(chunks)));
  await q.ack(rec!);

  await assert.rejects(q.prepare({ meta: () => { throw new Error('no account'); }, body: Readable.from([Buffer.alloc(5000, 'x')]) }), /no account/);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'blobs')), [], 'the spilled file removed');
  await store.close();
});
