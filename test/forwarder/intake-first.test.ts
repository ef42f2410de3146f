/*
 * forwarder/intake-first.ts, the rule alone: the event loop's utilisation and
 * the clock are given, each sample is stepped by hand. The forwarder running
 * it under a real smtp-source burst is in intake-first-burst.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { upDefaults } from '../../app/supervisor.js';
import { parseConfig } from '../../common/config.js';
import { BUSY_ENTER, BUSY_LEAVE, IntakeFirst, YIELD_RELAY_RATE } from '../../forwarder/intake-first.js';
import { tempDir } from '../helpers/postino.js';

const FULL = 64;

/** A rule whose next sample reads `u`, at time `t` (both settable). */
function rule(maxWaitMs = 10_000) {
  const at = { u: 0, t: 1_000_000 };
  const samples: boolean[] = [];
  const r = new IntakeFirst({ maxWaitMs, utilization: () => at.u, now: () => at.t, onSample: (y) => samples.push(y) });
  /** One sample after `accepted` messages were spooled in it, the loop at `u`. */
  const step = (u: number, accepted: number): number => {
    at.u = u;
    for (let i = 0; i < accepted; i++) r.noteAccepted();
    r.sample();
    return r.limit(FULL);
  };
  return { r, at, step, samples };
}

test('a saturated loop with apps sending: the relay keeps one message in flight (no pace measured yet); without either, full concurrency', () => {
  const { step, samples } = rule();
  assert.equal(step(1, 0), FULL, 'saturated by the relay alone (draining a backlog): no stepping back');
  assert.equal(step(0.5, 300), FULL, 'apps sending, loop not saturated: no stepping back');
  assert.equal(step(BUSY_ENTER - 0.01, 300), FULL, 'just below the entry threshold');
  assert.equal(step(BUSY_ENTER, 300), 1, 'saturated while apps send');
  assert.equal(step(0.99, 0), FULL, 'a sample without a new message ends it at once');
  assert.deepEqual(samples, [false, false, false, true, false]);
});

test('while stepping back, the messages in flight follow the relay\'s pace: one next to the listener, more behind a slow link (YIELD_RELAY_RATE a second), never above full', () => {
  const { r, step } = rule();
  assert.equal(step(0.95, 100), 1, 'no relay time measured yet: one');
  r.noteRelayed(2); // loopback: 2 ms a message
  assert.equal(r.limit(FULL), 1, '100/s × 2 ms rounds up to one');
  const slow = rule();
  slow.step(0.95, 100);
  for (let i = 0; i < 100; i++) slow.r.noteRelayed(200); // a 200 ms hop
  assert.equal(slow.r.limit(FULL), Math.ceil((YIELD_RELAY_RATE * 200) / 1000), 'Little\'s law: rate × time a message');
  assert.equal(slow.r.limit(FULL), 20);
  for (let i = 0; i < 100; i++) slow.r.noteRelayed(5_000); // a listener that takes seconds
  assert.equal(slow.r.limit(FULL), FULL, 'capped at the configured concurrency');
  assert.equal(slow.step(0.3, 100), FULL, 'not saturated: full, whatever the pace');
  const smooth = rule();
  smooth.step(0.95, 100);
  for (let i = 0; i < 50; i++) smooth.r.noteRelayed(2);
  smooth.r.noteRelayed(5_000); // one slow message (a timeout): its time alone would mean FULL
  assert.ok(smooth.r.limit(FULL) < FULL, `smoothed (${smooth.r.limit(FULL)})`);
  for (let i = 0; i < 40; i++) smooth.r.noteRelayed(2);
  assert.ok(smooth.r.limit(FULL) <= 2, `back to the pace of the messages since (${smooth.r.limit(FULL)})`);
});

test('once stepping back, it holds while the loop stays at or above BUSY_LEAVE (a dip between the thresholds does not flip it)', () => {
  const { step } = rule();
  assert.equal(step(0.95, 100), 1);
  assert.equal(step(BUSY_LEAVE, 100), 1, 'at the leave threshold: still busy');
  assert.equal(step((BUSY_LEAVE + BUSY_ENTER) / 2, 100), 1, 'between the thresholds: still busy');
  assert.equal(step(BUSY_LEAVE - 0.01, 100), FULL, 'below it: the relay runs at full concurrency again');
  assert.equal(step((BUSY_LEAVE + BUSY_ENTER) / 2, 100), FULL, 'and needs BUSY_ENTER to step back again');
});

test('a new message that waited longer than maxWaitMs ends stepping back until the relay leases a fresh one', () => {
  const { r, at, step } = rule(10_000);
  assert.equal(step(0.95, 100), 1);
  r.noteLeased({ enqueuedAt: at.t - 9_000, attempts: 1 });
  assert.equal(r.limit(FULL), 1, 'waited 9 s of at most 10');
  r.noteLeased({ enqueuedAt: at.t - 10_001, attempts: 1 });
  assert.equal(r.limit(FULL), FULL, 'waited past the bound: the backlog is drained at full concurrency');
  assert.equal(step(0.99, 100), FULL, 'still past it while the loop stays saturated');
  r.noteLeased({ enqueuedAt: at.t - 50, attempts: 1 });
  assert.equal(r.limit(FULL), 1, 'caught up: intake goes first again');
});

test('a retried message (leased after a failed attempt) ends stepping back: catching up is the relay\'s turn', () => {
  const { r, at, step } = rule();
  assert.equal(step(0.95, 100), 1);
  r.noteLeased({ enqueuedAt: at.t - 10, attempts: 2 });
  assert.equal(r.limit(FULL), FULL);
});

test('maxWaitMs 0 turns the rule off: never one at a time, and start() sets no timer', () => {
  const { r, step, samples } = rule(0);
  r.noteLeased({ enqueuedAt: 1_000_000, attempts: 1 }); // waited 0 ms
  assert.equal(step(1, 500), FULL);
  assert.equal(step(1, 500), FULL);
  assert.deepEqual(samples, [false, false]);
  r.start();
  assert.equal((r as unknown as { timer: unknown }).timer, undefined);
});

test('start() samples the real event loop: a loop blocked by a busy wait while messages arrive steps the relay back', async () => {
  const r = new IntakeFirst({ maxWaitMs: 10_000 });
  r.start();
  try {
    for (let i = 0; i < 3; i++) {
      r.noteAccepted();
      const until = performance.now() + 120; // longer than a sample: the timer fires late, onto a full window
      while (performance.now() < until);
      await new Promise((res) => setTimeout(res, 1));
    }
    assert.equal(r.limit(FULL), 1, 'busy loop with intake: stepping back');
    await new Promise((res) => setTimeout(res, 250)); // idle, nothing accepted
    assert.equal(r.limit(FULL), FULL, 'idle again: full concurrency');
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
