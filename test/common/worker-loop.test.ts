/*
 * WorkerLoop: bounded concurrency, stop/pause semantics, crash handling and
 * rate/gate waits, on a real queue with a fake clock (no sleeps).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { DurableQueue, QueueRecord } from '../../common/durable-queue.js';
import { TokenBucket } from '../../common/token-bucket.js';
import { WorkerLoop, type WorkerOptions } from '../../common/worker-loop.js';
import { deferred, FakeClock, until, type Deferred } from '../helpers/fake-clock.js';
import { silentLog, tempQueue } from '../helpers/temp-queue.js';

interface Meta {
  n: number;
}

type Handler = (rec: QueueRecord<Meta>, q: DurableQueue<Meta>) => Promise<void>;

/** A loop over a fresh queue holding messages 1..count, all due now; stopped and closed after the test. */
async function setup(t: TestContext, count: number, handle: Handler, opts: (clock: FakeClock) => Partial<WorkerOptions<Meta>> = () => ({})) {
  const clock = new FakeClock();
  const { store, q } = await tempQueue<Meta>('worker-loop', clock.now);
  for (let n = 1; n <= count; n++) await q.enqueue({ meta: { n }, body: Buffer.from(`m${n}`) });
  const loop = new WorkerLoop<Meta>({ queue: q, concurrency: 1, visibilityMs: 60_000, handle: (rec) => handle(rec, q), log: silentLog, idleWaitMs: 5, clock: clock.now, timers: clock, ...opts(clock) });
  t.after(async () => {
    await loop.stop();
    await store.close();
  });
  return { clock, q, loop };
}

/** Handlers that ack and record the message number. */
function acking(done: number[]): Handler {
  return async (rec, q) => {
    await q.ack(rec);
    done.push(rec.meta.n);
  };
}

async function waiting(q: DurableQueue<Meta>): Promise<number[]> {
  const out: number[] = [];
  for await (const r of q.records()) if (r.leasedUntil === 0) out.push(r.meta.n);
  return out.sort((a, b) => a - b);
}

test('never runs more handlers at once than its concurrency', async (t) => {
  let running = 0;
  let peak = 0;
  const done: number[] = [];
  const { loop } = await setup(t, 6, async (rec, q) => {
    peak = Math.max(peak, ++running);
    await new Promise((r) => setImmediate(r));
    await q.ack(rec);
    running--;
    done.push(rec.meta.n);
  }, () => ({ concurrency: 2 }));
  loop.start();
  await until(() => done.length === 6, 'six messages handled');
  assert.equal(peak, 2);
});

test('a freed slot takes exactly one more: with concurrency 2 and two handlers held, finishing one starts only the third', async (t) => {
  const held = new Map<number, Deferred>();
  t.after(() => held.forEach((d) => d.resolve())); // before setup's hook: stop() waits for these
  const { loop } = await setup(t, 4, async (rec, q) => {
    const d = deferred();
    held.set(rec.meta.n, d);
    await d.promise;
    await q.ack(rec);
  }, () => ({ concurrency: 2 }));
  loop.start();
  await until(() => held.size === 2, 'two handlers started');
  assert.deepEqual([...held.keys()], [1, 2]);
  held.get(1)!.resolve();
  await until(() => held.size >= 3, 'third handler started');
  assert.deepEqual([...held.keys()], [1, 2, 3]);
  assert.equal(loop.active, 2);
});

test('stop() resolves only after the in-flight handler has finished its ack', async (t) => {
  const order: string[] = [];
  const release = deferred();
  const { loop, q } = await setup(t, 1, async (rec, queue) => {
    order.push('started');
    await release.promise;
    await queue.ack(rec);
    order.push('acked');
  });
  loop.start();
  await until(() => order.length === 1, 'handler started');
  const stopped = loop.stop().then(() => order.push('stopped'));
  release.resolve();
  await stopped;
  assert.deepEqual(order, ['started', 'acked', 'stopped']);
  assert.equal(q.size, 0);
});

test('stop() starts nothing new: messages behind the in-flight one stay waiting on the queue', async (t) => {
  const done: number[] = [];
  const release = deferred();
  const started: number[] = [];
  const { loop, q } = await setup(t, 3, async (rec, queue) => {
    started.push(rec.meta.n);
    await release.promise;
    await acking(done)(rec, queue);
  });
  loop.start();
  await until(() => started.length === 1, 'first handler started');
  const stopped = loop.stop();
  release.resolve();
  await stopped;
  assert.deepEqual(started, [1]);
  assert.deepEqual(await waiting(q), [2, 3]);
});

test('start() after pause() resumes and handles the rest, each message once', async (t) => {
  const done: number[] = [];
  const release = deferred();
  const { loop } = await setup(t, 3, async (rec, q) => {
    if (rec.meta.n === 1) await release.promise;
    await acking(done)(rec, q);
  });
  loop.start();
  await until(() => loop.active === 1, 'first handler started');
  loop.pause();
  assert.equal(loop.isPaused, true);
  release.resolve();
  await until(() => done.length === 1, 'first message handled');
  loop.start();
  await until(() => done.length === 3, 'all messages handled');
  assert.deepEqual(done, [1, 2, 3]);
});

test('a handler that throws does not stop the loop: the next message is handled', async (t) => {
  const done: number[] = [];
  const { loop } = await setup(t, 2, async (rec, q) => {
    if (rec.meta.n === 1) throw new Error('handler bug');
    await acking(done)(rec, q);
  });
  loop.start();
  await until(() => done.length === 1, 'second message handled');
  assert.deepEqual(done, [2]);
});

test('a message whose handler threw is back on the queue, due retryOnCrashMs later by the injected clock', async (t) => {
  const done: number[] = [];
  let threw = false;
  const { loop, q, clock } = await setup(t, 1, async (rec, queue) => {
    if (!threw) {
      threw = true;
      throw new Error('handler bug');
    }
    await acking(done)(rec, queue);
  }, () => ({ retryOnCrashMs: 30_000 }));
  const t0 = clock.now();
  loop.start();
  await until(() => threw, 'first attempt');
  await until(async () => (await waiting(q)).length === 1, 'message given back');
  const [rec] = await collect(q);
  assert.equal(rec!.due, t0 + 30_000);
  clock.advance(30_000);
  await until(() => done.length === 1, 'retried after the crash delay');
});

test('rate: no more messages start than there are tokens; the next starts when the clock gives one', async (t) => {
  const done: number[] = [];
  const { loop, clock: clock } = await setup(t, 4, acking(done), (clock) => ({ concurrency: 10, rate: new TokenBucket({ ratePerSecond: 1, burst: 2, now: clock.now }) }));
  loop.start();
  await until(() => done.length === 2 && clock.timers.length === 1, 'burst of two, then a wait for a token');
  assert.deepEqual(clock.timers, [1_000]);
  clock.advance(999);
  assert.equal(done.length, 2);
  clock.advance(1);
  await until(() => done.length === 3 && clock.timers.length === 1, 'third message after one second');
  assert.deepEqual(done, [1, 2, 3]);
});

test('gate: a positive delay holds leasing until the clock has passed it', async (t) => {
  const done: number[] = [];
  const { loop, clock: clock } = await setup(t, 1, acking(done), (clock) => {
    const openAt = clock.now() + 500;
    return { gate: () => Math.max(0, openAt - clock.now()) };
  });
  loop.start();
  await until(() => clock.timers.length === 1, 'loop waiting at the gate');
  assert.deepEqual(clock.timers, [500]);
  assert.equal(done.length, 0);
  clock.advance(500);
  await until(() => done.length === 1, 'message handled after the gate opened');
});

async function collect(q: DurableQueue<Meta>): Promise<QueueRecord<Meta>[]> {
  const out: QueueRecord<Meta>[] = [];
  for await (const r of q.records()) out.push(r);
  return out;
}
