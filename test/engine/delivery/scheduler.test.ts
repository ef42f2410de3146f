/*
 * DeliveryScheduler: which copy goes next, per-domain lanes (rate, connections,
 * lookahead, priority), back-pressure actions, kill-switch and stop, on a real
 * delivery queue with a fake clock and fake timers: the handler stands in for
 * the sender and records the order. shaping.test.ts and outcomes.test.ts
 * measure the same rules end to end against a real relay, in real time.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { parseConfig, type BackPressureRule } from '../../../common/config.js';
import type { DurableQueue, QueueRecord } from '../../../common/durable-queue.js';
import type { DeliveryMeta, Stream } from '../../../engine/delivery/delivery-record.js';
import { KillSwitch } from '../../../engine/delivery/kill-switch.js';
import { DeliveryScheduler } from '../../../engine/delivery/scheduler.js';
import { deferred, FakeClock, until, type Deferred } from '../../helpers/fake-clock.js';
import { silentLog, tempQueue } from '../../helpers/temp-queue.js';

type Rec = QueueRecord<DeliveryMeta>;

interface Copy {
  to: string;
  stream?: Stream;
  account?: string;
}

interface Env {
  clock: FakeClock;
  q: DurableQueue<DeliveryMeta>;
  s: DeliveryScheduler;
  killSwitch: KillSwitch;
  /** Recipients in the order the scheduler handed them to the sender. */
  sent: string[];
  /** Copies waiting on disk (not leased): recipient and due time, in due order. */
  waiting(): Promise<Array<{ to: string; due: number }>>;
}

interface Options {
  /** Raw `delivery` config (defaults filled in by the schema). */
  delivery?: Record<string, unknown>;
  /** What the sender does with a copy; the default acks it. Runs after the copy is recorded in `sent`. */
  send?: (rec: Rec, q: DurableQueue<DeliveryMeta>) => Promise<BackPressureRule | undefined>;
  retryOnCrashMs?: number;
}

const ack = async (rec: Rec, q: DurableQueue<DeliveryMeta>): Promise<undefined> => {
  await q.ack(rec);
  return undefined;
};

/**
 * Enqueues `copies` (due one millisecond apart, in list order) before the
 * scheduler starts, so its first lease takes them in one batch.
 */
async function setup(t: TestContext, copies: Copy[], o: Options = {}): Promise<Env> {
  const clock = new FakeClock();
  const { store, q } = await tempQueue<DeliveryMeta>('scheduler', clock.now);
  const killSwitch = await KillSwitch.open(store);
  const t0 = clock.now();
  for (const [i, c] of copies.entries()) await q.enqueue({ meta: meta(c), body: Buffer.from('Subject: x\r\n\r\nx\r\n'), due: t0 - copies.length + i });
  const sent: string[] = [];
  const send = o.send ?? ack;
  const s = new DeliveryScheduler({
    queue: q,
    config: parseConfig({ delivery: o.delivery ?? {} }).delivery,
    killSwitch,
    visibilityMs: 600_000,
    handle: (rec) => {
      sent.push(rec.meta.recipient);
      return send(rec, q);
    },
    log: silentLog,
    clock: clock.now,
    timers: clock,
    idleWaitMs: 5,
    retryOnCrashMs: o.retryOnCrashMs,
  });
  t.after(async () => {
    await s.stop();
    await store.close();
  });
  const waiting = async (): Promise<Array<{ to: string; due: number }>> => {
    const out: Array<{ to: string; due: number }> = [];
    for await (const r of q.records()) if (r.leasedUntil === 0) out.push({ to: r.meta.recipient, due: r.due });
    return out.sort((a, b) => a.due - b.due);
  };
  return { clock, q, s, killSwitch, sent, waiting };
}

function meta(c: Copy): DeliveryMeta {
  return {
    envelope: { mailFrom: 'bounce@example.org', rcptTo: [c.to], clientAddress: '127.0.0.1', heloName: 'localhost', receivedAt: 0, tls: true },
    pending: [c.to],
    intakeId: 'intake',
    account: c.account ?? 'default',
    recipient: c.to,
    sender: 'shop@example.org',
    stream: c.stream ?? 'transactional',
  };
}

/** `n` copies to `domain`: `${prefix}1@domain` … */
function many(n: number, domain: string, stream: Stream = 'bulk', prefix = 'b'): Copy[] {
  return Array.from({ length: n }, (_, i) => ({ to: `${prefix}${i + 1}@${domain}`, stream }));
}

/** A sender that holds each copy until the test releases it (released anyway after the test). */
function holding(t: TestContext): { held: Map<string, Deferred>; send: NonNullable<Options['send']> } {
  const held = new Map<string, Deferred>();
  t.after(() => held.forEach((d) => d.resolve())); // registered before setup's: stop() waits for these
  return {
    held,
    send: async (rec, q) => {
      const d = deferred();
      held.set(rec.meta.recipient, d);
      await d.promise;
      return ack(rec, q);
    },
  };
}

const of = (sent: string[], domain: string): string[] => sent.filter((r) => r.endsWith(`@${domain}`));

function rule(action: 'suspend' | 'slow', seconds: number, messagesPerSecond = 1): BackPressureRule {
  return { name: `test-${action}`, match: 'x', action, seconds, messagesPerSecond };
}

test('a transactional copy of a domain goes out before the bulk copies leased with it, though due later', async (t) => {
  const env = await setup(t, [{ to: 'b1@x.test', stream: 'bulk' }, { to: 'b2@x.test', stream: 'bulk' }, { to: 't1@x.test' }], {
    delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 } } } },
  });
  env.s.start();
  await until(() => env.sent.length === 3, 'three copies sent');
  assert.deepEqual(env.sent, ['t1@x.test', 'b1@x.test', 'b2@x.test']);
});

test('copies of one domain and stream go out in due order', async (t) => {
  const env = await setup(t, many(5, 'x.test'), { delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 } } } } });
  env.s.start();
  await until(() => env.sent.length === 5, 'five copies sent');
  assert.deepEqual(env.sent, ['b1@x.test', 'b2@x.test', 'b3@x.test', 'b4@x.test', 'b5@x.test']);
});

test('a rate-limited domain does not hold back another domain: all fast copies go while the slow one waits for its next token', async (t) => {
  const env = await setup(t, [...many(3, 'slow.test'), ...many(3, 'fast.test')], { delivery: { shaping: { domains: { 'slow.test': { messagesPerSecond: 1 } } } } });
  env.s.start();
  await until(() => of(env.sent, 'fast.test').length === 3, 'fast.test done');
  assert.deepEqual(of(env.sent, 'slow.test'), ['b1@slow.test']);
  assert.deepEqual(env.clock.timers, [1_000]);
});

test('a domain at 2 msg/s gets its next copy when the clock reaches 500 ms, not 1 ms earlier', async (t) => {
  const env = await setup(t, many(3, 'slow.test'), { delivery: { shaping: { domains: { 'slow.test': { messagesPerSecond: 2 } } } } });
  env.s.start();
  await until(() => env.sent.length === 1 && env.clock.timers.length === 1, 'first copy sent, lane waiting for a token');
  env.clock.advance(499);
  assert.equal(env.sent.length, 1);
  env.clock.advance(1);
  assert.equal(env.sent.length, 2);
  await until(() => env.clock.timers.length === 1, 'lane waiting again');
  env.clock.advance(500);
  assert.equal(env.sent.length, 3);
});

test('at most maxConnections copies of a domain are in flight; a finished one lets exactly one more start', async (t) => {
  const h = holding(t);
  const env = await setup(t, many(4, 'x.test'), { delivery: { shaping: { domains: { 'x.test': { maxConnections: 2 } } } }, send: h.send });
  env.s.start();
  await until(() => env.sent.length === 2, 'two copies in flight');
  assert.equal(env.s.inFlightCount, 2);
  h.held.get('b1@x.test')!.resolve();
  await until(() => env.sent.length >= 3, 'a third copy started');
  assert.deepEqual(env.sent, ['b1@x.test', 'b2@x.test', 'b3@x.test']);
});

test('one domain at its connection limit does not limit another domain', async (t) => {
  const h = holding(t);
  const env = await setup(t, [...many(3, 'busy.test'), ...many(3, 'other.test')], { delivery: { shaping: { domains: { 'busy.test': { maxConnections: 1 } } } }, send: h.send });
  env.s.start();
  await until(() => of(env.sent, 'other.test').length === 3, 'other.test all in flight');
  assert.deepEqual(of(env.sent, 'busy.test'), ['b1@busy.test']);
});

test('a full lane sends its overflow back to disk, due one rate interval apart after the lane has drained', async (t) => {
  // 1 msg/s with laneLookaheadSeconds 5: the lane holds its minimum of 20.
  const env = await setup(t, many(23, 'slow.test'), { delivery: { shaping: { domains: { 'slow.test': { messagesPerSecond: 1 } } } } });
  const t0 = env.clock.now();
  env.s.start();
  await until(() => env.sent.length === 1, 'first copy sent');
  assert.deepEqual(await env.waiting(), [
    { to: 'b21@slow.test', due: t0 + 21_000 },
    { to: 'b22@slow.test', due: t0 + 22_000 },
    { to: 'b23@slow.test', due: t0 + 23_000 },
  ]);
  assert.equal(env.s.readyCount, 19);
});

test('a transactional copy finding its lane full takes the place of the last bulk copy, which goes back to disk', async (t) => {
  const env = await setup(t, [...many(20, 'slow.test'), { to: 'tx@slow.test' }], { delivery: { shaping: { domains: { 'slow.test': { messagesPerSecond: 1 } } } } });
  env.s.start();
  await until(() => env.sent.length === 1, 'first copy sent');
  assert.deepEqual(env.sent, ['tx@slow.test']);
  assert.deepEqual((await env.waiting()).map((w) => w.to), ['b20@slow.test']);
});

test('readyMax bounds the copies leased into memory; the rest stay waiting on disk until one finishes', async (t) => {
  const h = holding(t);
  const env = await setup(t, many(6, 'x.test'), { delivery: { readyMax: 3, shaping: { domains: { 'x.test': { maxConnections: 1 } } } }, send: h.send });
  env.s.start();
  await until(() => env.sent.length === 1, 'first copy in flight');
  assert.equal((await env.waiting()).length, 3);
  h.held.get('b1@x.test')!.resolve();
  await until(async () => (await env.waiting()).length === 2, 'one more leased after a copy finished');
});

test('a suspend rule returns the domain\'s waiting copies to disk, due when the suspension ends, and shows it in the lane status', async (t) => {
  const env = await setup(t, many(3, 'susp.test'), {
    delivery: { shaping: { domains: { 'susp.test': { maxConnections: 1 } } } },
    send: async (rec, q) => (await ack(rec, q), rec.meta.recipient === 'b1@susp.test' ? rule('suspend', 60) : undefined),
  });
  const t0 = env.clock.now();
  env.s.start();
  await until(async () => (await env.waiting()).length === 2, 'copies back on disk');
  assert.deepEqual(await env.waiting(), [
    { to: 'b2@susp.test', due: t0 + 60_000 },
    { to: 'b3@susp.test', due: t0 + 60_000 },
  ]);
  const lane = env.s.lanesStatus().find((l) => l.domain === 'susp.test');
  assert.equal(lane?.suspendedUntil, new Date(t0 + 60_000).toISOString());
  assert.equal(lane?.rule, 'test-suspend');
  assert.equal(lane?.ready, 0);
});

test('while a domain is suspended, its new copies go straight back to disk and other domains\' copies are sent', async (t) => {
  const env = await setup(t, [{ to: 'first@susp.test' }], { send: async (rec, q) => (await ack(rec, q), rule('suspend', 60)) });
  const t0 = env.clock.now();
  env.s.start();
  await until(() => env.s.lanesStatus()[0]?.suspendedUntil !== undefined, 'domain suspended');
  await env.q.enqueue({ meta: meta({ to: 'later@susp.test' }), body: Buffer.from('x') });
  await env.q.enqueue({ meta: meta({ to: 'o1@other.test' }), body: Buffer.from('x') });
  await until(() => env.sent.includes('o1@other.test'), 'other.test sent');
  await until(async () => (await env.waiting()).length === 1, 'suspended copy back on disk');
  assert.deepEqual(await env.waiting(), [{ to: 'later@susp.test', due: t0 + 60_000 }]);
  assert.deepEqual(of(env.sent, 'susp.test'), ['first@susp.test']);
});

test('when the suspension ends, the domain\'s copies are sent', async (t) => {
  const env = await setup(t, many(3, 'susp.test'), {
    delivery: { shaping: { domains: { 'susp.test': { maxConnections: 1 } } } },
    send: async (rec, q) => (await ack(rec, q), rec.meta.recipient === 'b1@susp.test' ? rule('suspend', 60) : undefined),
  });
  env.s.start();
  await until(async () => (await env.waiting()).length === 2, 'copies back on disk');
  env.clock.advance(60_000);
  await until(() => env.sent.length === 3, 'all sent after the suspension');
  assert.deepEqual(env.sent, ['b1@susp.test', 'b2@susp.test', 'b3@susp.test']);
});

test('a slow rule lowers an unlimited domain to the rule\'s rate, shown in the lane status', async (t) => {
  const env = await setup(t, many(4, 'x.test'), {
    delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 } } } },
    send: async (rec, q) => (await ack(rec, q), rec.meta.recipient === 'b1@x.test' ? rule('slow', 10, 1) : undefined),
  });
  const t0 = env.clock.now();
  env.s.start();
  await until(() => env.sent.length === 2 && env.clock.timers.length === 1, 'second copy sent, lane waiting for a token');
  assert.deepEqual(env.clock.timers, [1_000]);
  const lane = env.s.lanesStatus()[0];
  assert.equal(lane?.messagesPerSecond, 1);
  assert.equal(lane?.slowedUntil, new Date(t0 + 10_000).toISOString());
  env.clock.advance(999);
  assert.equal(env.sent.length, 2);
  env.clock.advance(1);
  assert.equal(env.sent.length, 3);
});

test('when a slow rule\'s time is up, the domain returns to its configured rate', async (t) => {
  const env = await setup(t, many(6, 'x.test'), {
    delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 } } } },
    send: async (rec, q) => (await ack(rec, q), rec.meta.recipient === 'b1@x.test' ? rule('slow', 2, 1) : undefined),
  });
  env.s.start();
  await until(() => env.sent.length === 2 && env.clock.timers.length === 1, 'slowed');
  env.clock.advance(1_000);
  await until(() => env.sent.length === 3 && env.clock.timers.length === 1, 'third copy after one second');
  env.clock.advance(1_000);
  await until(() => env.sent.length === 6, 'the rest without waiting for tokens');
  assert.deepEqual(env.clock.timers, []);
  assert.equal(env.s.lanesStatus()[0]?.messagesPerSecond, 0);
  assert.equal(env.s.lanesStatus()[0]?.slowedUntil, undefined);
});

test('a sender that throws puts its copy back due retryOnCrashMs later, and the lane goes on', async (t) => {
  const env = await setup(t, many(2, 'x.test'), {
    delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 } } } },
    retryOnCrashMs: 30_000,
    send: async (rec, q) => {
      if (rec.meta.recipient === 'b1@x.test') throw new Error('sender bug');
      return ack(rec, q);
    },
  });
  const t0 = env.clock.now();
  env.s.start();
  await until(() => env.sent.length === 2, 'second copy sent');
  await until(async () => (await env.waiting()).length === 1, 'crashed copy back on disk');
  assert.deepEqual(await env.waiting(), [{ to: 'b1@x.test', due: t0 + 30_000 }]);
});

test('stop() resolves only after the in-flight send has finished', async (t) => {
  const h = holding(t);
  const env = await setup(t, many(1, 'x.test'), { send: h.send });
  env.s.start();
  await until(() => env.sent.length === 1, 'copy in flight');
  let stopped = false;
  const stopping = env.s.stop().then(() => (stopped = true));
  // Give stop() the few I/O turns it needs for everything else (lease loop exit, lane release).
  for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(stopped, false, 'stop() still waiting for the in-flight send');
  h.held.get('b1@x.test')!.resolve();
  await stopping;
  assert.equal(env.q.size, 0, 'the in-flight copy was acked before stop() returned');
});

test('stop() returns the copies waiting in lanes to disk, due at once', async (t) => {
  const h = holding(t);
  const env = await setup(t, many(3, 'x.test'), { delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 } } } }, send: h.send });
  env.s.start();
  await until(() => env.sent.length === 1, 'first copy in flight');
  const stopping = env.s.stop();
  h.held.get('b1@x.test')!.resolve();
  await stopping;
  const now = env.clock.now();
  assert.deepEqual(await env.waiting(), [
    { to: 'b2@x.test', due: now },
    { to: 'b3@x.test', due: now },
  ]);
  assert.deepEqual(env.sent, ['b1@x.test']);
});

test('a global pause returns every lane copy to disk while the in-flight send completes', async (t) => {
  const h = holding(t);
  const env = await setup(t, [...many(2, 'x.test'), ...many(2, 'y.test')], {
    delivery: { shaping: { domains: { 'x.test': { maxConnections: 1 }, 'y.test': { maxConnections: 1 } } } },
    send: h.send,
  });
  env.s.start();
  await until(() => env.sent.length === 2, 'one copy per domain in flight');
  await env.killSwitch.pause();
  await until(async () => (await env.waiting()).length === 2, 'lane copies back on disk');
  assert.deepEqual((await env.waiting()).map((w) => w.to).sort(), ['b2@x.test', 'b2@y.test']);
  assert.equal(env.s.readyCount, 0);
  h.held.forEach((d) => d.resolve());
  await until(() => env.s.inFlightCount === 0, 'in-flight sends completed');
  assert.equal(env.q.size, 2);
});

test('resume after a global pause sends the copies held on disk', async (t) => {
  const env = await setup(t, many(3, 'x.test'));
  await env.killSwitch.pause();
  env.s.start();
  await env.killSwitch.resume();
  await until(() => env.q.size === 0, 'all sent and acked after resume');
  assert.deepEqual(env.sent, ['b1@x.test', 'b2@x.test', 'b3@x.test']);
});

test('pausing one account returns only its waiting copies, due pausedRecheckSeconds later; others still go', async (t) => {
  const h = holding(t);
  const env = await setup(t, [{ to: 'a1@x.test', account: 'a' }, { to: 'a2@x.test', account: 'a' }, { to: 'b1@x.test', account: 'b' }], {
    delivery: { pausedRecheckSeconds: 7, shaping: { domains: { 'x.test': { maxConnections: 1 } } } },
    send: h.send,
  });
  const t0 = env.clock.now();
  env.s.start();
  await until(() => env.sent.length === 1, 'a1 in flight');
  await env.killSwitch.pause('a');
  await until(async () => (await env.waiting()).length === 1, 'a2 back on disk');
  assert.deepEqual(await env.waiting(), [{ to: 'a2@x.test', due: t0 + 7_000 }]);
  h.held.get('a1@x.test')!.resolve();
  await until(() => env.sent.length === 2, 'next copy sent');
  assert.deepEqual(env.sent, ['a1@x.test', 'b1@x.test']);
});

test('a lane idle for more than a minute is forgotten', async (t) => {
  const env = await setup(t, many(1, 'x.test'));
  env.s.start();
  await until(() => env.sent.length === 1 && env.s.inFlightCount === 0, 'copy sent');
  assert.deepEqual(env.s.lanesStatus().map((l) => l.domain), ['x.test']);
  env.clock.advance(60_001);
  await until(() => env.s.lanesStatus().length === 0, 'lane forgotten');
});
