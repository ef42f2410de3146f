/*
 * forwarder/intake-first.ts, the rule alone: the event loop's utilisation and
 * the clock are given, each sample is stepped by hand; its pacing also under
 * the relay's WorkerLoop on a fake clock. The forwarder running it under a
 * real smtp-source burst is in intake-first-burst.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { upDefaults } from '../../app/supervisor.js';
import { parseConfig } from '../../common/config.js';
import { TokenBucket, type RateLimit } from '../../common/token-bucket.js';
import { WorkerLoop } from '../../common/worker-loop.js';
import { BUSY_ENTER, BUSY_LEAVE, BUSY_MESSAGES, ENTER_SAMPLES, IntakeFirst, LEAVE_WINDOW_SAMPLES, YIELD_RELAY_RATE } from '../../forwarder/intake-first.js';
import { FakeClock, until } from '../helpers/fake-clock.js';
import { tempDir } from '../helpers/postino.js';
import { silentLog, tempQueue } from '../helpers/temp-queue.js';

/** `n` messages spooled, as the intake reports each one. */
function handOver(r: IntakeFirst, n: number): void {
  for (let i = 0; i < n; i++) r.noteAccepted();
}

/** A rule whose next sample reads `u`, at time `t` (both settable). */
function rule(maxWaitMs = 10_000) {
  const at = { u: 0, t: 1_000_000 };
  const samples: boolean[] = [];
  const r = new IntakeFirst({ maxWaitMs, utilization: () => at.u, now: () => at.t, onSample: (y) => samples.push(y) });
  /** `n` samples, each after `accepted` messages were spooled in it, the loop at `u`: whether the relay steps back after the last. */
  const steps = (n: number, u: number, accepted: number): boolean => {
    at.u = u;
    for (let k = 0; k < n; k++) {
      handOver(r, accepted);
      r.sample();
    }
    return r.yielding;
  };
  return { r, at, steps, samples };
}

/** Starts taken from `rate` over `ms` of the rule's clock, as WorkerLoop takes them: what is available (unlimited: 1,000 a millisecond), else a sleep of msUntilNext(). */
function startsOver(rate: RateLimit, at: { t: number }, ms: number): number {
  let started = 0;
  const end = at.t + ms;
  while (at.t < end) {
    const n = Math.min(rate.available(), 1_000);
    if (n >= 1) {
      rate.take(n);
      started += n;
      if (n === 1_000) at.t += 1; // unlimited: 1,000 a millisecond
    } else at.t += rate.msUntilNext();
  }
  return started;
}

test('a saturated loop with apps sending a burst steps the relay back; a loop saturated by the relay alone or by a few messages, or not saturated, does not', () => {
  const { steps, samples } = rule();
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 1, 0), false, 'saturated by the relay alone (draining a backlog): no stepping back');
  const fewer = BUSY_MESSAGES / ENTER_SAMPLES - 1;
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 0.99, fewer), false, `saturated, but ${fewer} messages a sample, fewer than BUSY_MESSAGES over the entry window: one lock-step client, not a burst`);
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 0.5, 300), false, 'apps sending, loop not saturated: no stepping back');
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, BUSY_ENTER - 0.01, 300), false, 'just below the entry threshold');
  assert.equal(steps(1, 0.1, 300), false, 'a quiet sample');
  assert.equal(steps(ENTER_SAMPLES - 1, 0.99, 300), false, 'then saturated for less than ENTER_SAMPLES samples: not yet');
  assert.equal(steps(1, 0.99, 300), true, 'saturated over ENTER_SAMPLES samples while apps send');
  assert.equal(steps(LEAVE_WINDOW_SAMPLES - 1, 0.99, 0), true, 'a quiet moment shorter than the leave window does not end it');
  assert.equal(steps(1, 0.99, 0), false, 'a whole leave window without a new message ends it');
  const before = 4 * LEAVE_WINDOW_SAMPLES + 1 + (ENTER_SAMPLES - 1);
  assert.deepEqual(samples, [...Array<boolean>(before).fill(false), ...Array<boolean>(LEAVE_WINDOW_SAMPLES).fill(true), false], 'each sample reports whether the relay steps back');
});

test('while stepping back the relay starts YIELD_RELAY_RATE messages a second, one at a time, under the configured cap; otherwise only the cap counts', () => {
  const { r, at, steps } = rule();
  const unlimited = r.relayRate(new TokenBucket({ ratePerSecond: 0 }));
  assert.equal(unlimited.available(), Infinity, 'not stepping back: no pacing');
  assert.equal(startsOver(unlimited, at, 1_000), 1_000_000, 'as many as asked');
  assert.equal(steps(ENTER_SAMPLES, 0.95, 100), true);
  assert.equal(unlimited.available(), 1, 'one start at a time');
  unlimited.take(1);
  assert.equal(unlimited.available(), 0);
  assert.equal(unlimited.msUntilNext(), 1000 / YIELD_RELAY_RATE, 'the next one in 10 ms');
  const paced = startsOver(unlimited, at, 2_000);
  assert.ok(paced >= 2 * YIELD_RELAY_RATE - 1 && paced <= 2 * YIELD_RELAY_RATE + 1, `${paced} starts in 2 s`);
  const capped = r.relayRate(new TokenBucket({ ratePerSecond: 20, burst: 1, now: () => at.t }));
  assert.equal(startsOver(capped, at, 1_000), 20, 'a configured cap below the pace still holds');
  at.t += 1_000;
  capped.take(capped.available());
  assert.equal(capped.msUntilNext(), 50, 'the longer wait of the two (20/s)');
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 0.3, 100), false);
  assert.equal(startsOver(unlimited, at, 10), 10_000, 'no longer stepping back: as many as asked again');
});

test('the relay\'s WorkerLoop while stepping back: messages relayed at once are started one every 10 ms, not back to back', async (t) => {
  const clock = new FakeClock();
  const { store, q } = await tempQueue<{ n: number }>('intake-first-pace', clock.now);
  for (let n = 0; n < 30; n++) await q.enqueue({ meta: { n }, body: Buffer.from(`m${n}`) });
  let u = 0.95;
  const r = new IntakeFirst({ maxWaitMs: 10_000, utilization: () => u, now: clock.now });
  for (let i = 0; i < ENTER_SAMPLES; i++) {
    handOver(r, BUSY_MESSAGES);
    r.sample();
  }
  assert.equal(r.yielding, true);
  let relayed = 0;
  const loop = new WorkerLoop<{ n: number }>({
    queue: q,
    concurrency: 64,
    visibilityMs: 60_000,
    rate: r.relayRate(new TokenBucket({ ratePerSecond: 0 })),
    handle: async (rec) => {
      r.noteLeased(rec);
      await q.ack(rec); // a relay that takes no time: one in flight would not slow it
      relayed++;
    },
    log: silentLog,
    idleWaitMs: 5,
    clock: clock.now,
    timers: clock,
  });
  t.after(async () => {
    await loop.stop();
    await store.close();
  });
  loop.start();
  await until(() => relayed === 1 && clock.timers.length === 1, 'the first message, then a wait');
  assert.deepEqual(clock.timers, [1000 / YIELD_RELAY_RATE]);
  for (let i = 2; i <= 5; i++) {
    clock.advance(1000 / YIELD_RELAY_RATE);
    await until(() => relayed === i && clock.timers.length === 1, `message ${i} after 10 ms more`);
  }
  u = 0.5; // the burst is over
  for (let i = 0; i < LEAVE_WINDOW_SAMPLES; i++) {
    handOver(r, BUSY_MESSAGES);
    r.sample();
  }
  clock.advance(1000 / YIELD_RELAY_RATE);
  await until(() => relayed === 30, 'the rest at once, without the clock moving');
});

test('once stepping back, it holds while the loop stays at or above BUSY_LEAVE over the leave window (a dip between the thresholds, or one short quiet sample, does not flip it)', () => {
  const { steps } = rule();
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 0.95, 100), true);
  assert.equal(steps(1, 0.3, 100), true, 'one quiet sample inside a busy window does not flip it');
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 0.95, 100), true);
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, BUSY_LEAVE + 0.01, 100), true, 'just above the leave threshold over a whole window: still busy');
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, (BUSY_LEAVE + BUSY_ENTER) / 2, 100), true, 'between the thresholds: still busy');
  assert.equal(steps(1, 0.3, 100), false, 'the window\'s utilisation below BUSY_LEAVE: the relay runs at full concurrency again');
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, (BUSY_LEAVE + BUSY_ENTER) / 2, 100), false, 'and needs BUSY_ENTER to step back again');
});

test('once stepping back, it holds while apps hand over BUSY_MESSAGES a leave window, and ends when fewer come, however busy the loop', () => {
  const { steps } = rule();
  const each = BUSY_MESSAGES / LEAVE_WINDOW_SAMPLES;
  assert.equal(steps(ENTER_SAMPLES, 0.95, 100), true);
  assert.equal(steps(LEAVE_WINDOW_SAMPLES, 0.99, each), true, `${each} a sample, BUSY_MESSAGES a window: still a burst`);
  assert.equal(steps(1, 0.99, each - 1), false, 'one message fewer in the window: the burst is over, the relay runs at full concurrency');
});

test('a new message that waited longer than maxWaitMs ends stepping back until the relay leases a fresh one', () => {
  const { r, at, steps } = rule(10_000);
  assert.equal(steps(ENTER_SAMPLES, 0.95, 100), true);
  r.noteLeased({ enqueuedAt: at.t - 9_000, attempts: 1 });
  assert.equal(r.yielding, true, 'waited 9 s of at most 10');
  r.noteLeased({ enqueuedAt: at.t - 10_001, attempts: 1 });
  assert.equal(r.yielding, false, 'waited past the bound: the backlog is drained at full concurrency');
  assert.equal(steps(1, 0.99, 100), false, 'still past it while the loop stays saturated');
  r.noteLeased({ enqueuedAt: at.t - 50, attempts: 1 });
  assert.equal(r.yielding, true, 'caught up: intake goes first again');
});

test('a retried message (leased after a failed attempt) ends stepping back: catching up is the relay\'s turn', () => {
  const { r, at, steps } = rule();
  assert.equal(steps(ENTER_SAMPLES, 0.95, 100), true);
  r.noteLeased({ enqueuedAt: at.t - 10, attempts: 2 });
  assert.equal(r.yielding, false);
});

test('maxWaitMs 0 turns the rule off: never one at a time, and start() sets no timer', () => {
  const { r, steps, samples } = rule(0);
  r.noteLeased({ enqueuedAt: 1_000_000, attempts: 1 }); // waited 0 ms
  assert.equal(steps(ENTER_SAMPLES, 1, 500), false);
  assert.equal(steps(ENTER_SAMPLES, 1, 500), false);
  assert.deepEqual(samples, Array<boolean>(2 * ENTER_SAMPLES).fill(false));
  r.start();
  assert.equal((r as unknown as { timer: unknown }).timer, undefined);
});

test('start() samples the real event loop: a loop blocked by a busy wait while messages arrive steps the relay back', async () => {
  const r = new IntakeFirst({ maxWaitMs: 10_000 });
  r.start();
  try {
    for (let i = 0; i < 3; i++) {
      handOver(r, BUSY_MESSAGES);
      const until = performance.now() + 120; // longer than a sample: the timer fires late, onto a full window
      while (performance.now() < until);
      await new Promise((res) => setTimeout(res, 1));
    }
    assert.equal(r.yielding, true, 'busy loop with intake: stepping back');
    await new Promise((res) => setTimeout(res, 250)); // idle, nothing accepted
    assert.equal(r.yielding, false, 'idle again: full concurrency');
    const timer = (): unknown => (r as unknown as { timer: unknown }).timer;
    assert.equal(timer(), undefined, 'no sampling timer while nothing arrives');
    r.noteAccepted();
    assert.notEqual(timer(), undefined, 'the next message sets it again');
  } finally {
    r.stop();
  }
});

test('relay.yieldToIntakeSeconds: 10 for the forwarder, 0 under `postino up` unless the config sets it; a negative value is refused with its key path', () => {
  const dir = tempDir('intake-first-config');
  const [certFile, keyFile, caFile] = ['cert.pem', 'key.pem', 'ca.pem'].map((f) => path.join(dir, f)) as [string, string, string];
  for (const f of [certFile, keyFile, caFile]) fs.writeFileSync(f, ''); // the schema checks they exist
  const up = upDefaults({ certFile, keyFile, caFile });
  assert.equal(parseConfig({}).forwarder.relay.yieldToIntakeSeconds, 10);
  assert.equal(parseConfig(up({})).forwarder.relay.yieldToIntakeSeconds, 0);
  assert.equal(parseConfig(up({ forwarder: { relay: { yieldToIntakeSeconds: 5 } } })).forwarder.relay.yieldToIntakeSeconds, 5);
  assert.throws(
    () => parseConfig({ forwarder: { relay: { yieldToIntakeSeconds: -1 } } }),
    (e: { problems?: Array<{ path: string; message: string }> }) => e.problems?.[0]?.path === 'forwarder.relay.yieldToIntakeSeconds' && /0/.test(e.problems[0].message),
  );
});
