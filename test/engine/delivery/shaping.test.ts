/*
 * Per-destination shaping without head-of-line blocking (priority lanes:
 * shaping-priority.test.ts, which runs in the timed pass).
 *
 * The figures: 200 copies per domain, interleaved; slow.test at 2 msg/s
 * takes ~100 s, the longest test of the suite, and the only way to measure the
 * rate over the whole trickle.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDeliveryHarness, sink } from '../../helpers/delivery-harness.js';
import { readSink } from '../../helpers/sink-reader.js';

const PER_DOMAIN = 200;

test('slow.test at 2 msg/s trickles at 2 ± 0.3 msg/s while fast.test (unlimited) finishes at full speed', { timeout: 180_000 }, async () => {
  const s = await sink();
  const h = await startDeliveryHarness({
    delivery: { relays: [`smtp://127.0.0.1:${s.port}`], shaping: { domains: { 'slow.test': { messagesPerSecond: 2 } } } },
  });
  try {
    const t0 = Date.now();
    for (let i = 0; i < PER_DOMAIN; i++) {
      await h.send(`s${i}@slow.test`);
      await h.send(`f${i}@fast.test`);
    }
    const evs = await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 2 * PER_DOMAIN, 150_000);
    const at = (dom: string): number[] => evs.filter((e) => e.type === 'delivered' && e.recipient!.endsWith(dom)).map((e) => Date.parse(e.at)).sort((a, b) => a - b);
    const fast = at('@fast.test');
    const slow = at('@slow.test');
    assert.equal(fast.length, PER_DOMAIN);
    assert.equal(slow.length, PER_DOMAIN);
    const fastDone = fast.at(-1)! - t0;
    // Full speed: all 200 fast copies are out while slow.test has sent a handful (it needs ~100 s).
    assert.ok(fastDone < 5_000, `fast.test done ${fastDone} ms after the first enqueue, not held behind slow.test`);
    assert.ok(slow.filter((t) => t <= fast.at(-1)!).length < 20, 'slow.test had barely started when fast.test was done');
    // Rate over the steady part: from the 2nd to the last delivery (the first token is free).
    const rate = (slow.length - 2) / ((slow.at(-1)! - slow[1]!) / 1000);
    assert.ok(rate >= 1.7 && rate <= 2.3, `slow.test at ${rate.toFixed(2)} msg/s`);
    console.log(`# fast.test: ${PER_DOMAIN} in ${fastDone} ms; slow.test: ${rate.toFixed(2)} msg/s`);
  } finally {
    await h.close();
    await s.close();
  }
});

test('messagesPerConnection of a domain override: a connection is renewed after that many messages', { timeout: 30_000 }, async () => {
  const s = await sink();
  const h = await startDeliveryHarness({
    delivery: { relays: [`smtp://127.0.0.1:${s.port}`], shaping: { domains: { 'short.test': { maxConnections: 1, messagesPerConnection: 3 } } } },
  });
  try {
    for (let i = 0; i < 9; i++) await h.send(`m${i}@short.test`);
    await h.waitFor((e) => e.filter((x) => x.type === 'delivered').length >= 9, 15_000);
    const perSession = new Map<string, number>();
    for (const m of readSink(s.dir)) perSession.set(m.sessionId, (perSession.get(m.sessionId) ?? 0) + 1);
    assert.deepEqual([...perSession.values()], [3, 3, 3], 'three connections of three messages');
  } finally {
    await h.close();
    await s.close();
  }
});
