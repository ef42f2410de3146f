/*
 * Priority lanes: a transactional copy overtakes a bulk backlog of its own
 * domain. Its bound (2 s) is a latency under load, so this file runs in the
 * timed pass (test/run.js), with the machine to itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDeliveryHarness, sink } from '../../helpers/delivery-harness.js';

test('priority: with 10,000 bulk copies queued for a domain limited to 100 msg/s, a transactional copy is delivered within 2 s', { timeout: 60_000 }, async () => {
  const s = await sink();
  const h = await startDeliveryHarness({
    delivery: { relays: [`smtp://127.0.0.1:${s.port}`], shaping: { domains: { 'prio.test': { messagesPerSecond: 100 } } } },
  });
  try {
    await h.delivery.killSwitch.pause(); // queue the backlog first, as a newsletter send would
    const BULK = 10_000;
    const batch: Promise<string>[] = [];
    for (let i = 0; i < BULK; i++) {
      batch.push(h.send(`b${i}@prio.test`, { stream: 'bulk' }));
      if (batch.length === 200) await Promise.all(batch.splice(0));
    }
    await Promise.all(batch);
    await h.delivery.killSwitch.resume();
    await new Promise((r) => setTimeout(r, 1_000)); // the bulk send is under way
    const t0 = Date.now();
    const id = await h.send('reset@prio.test', { stream: 'transactional', subject: 'Password reset' });
    const evs = await h.waitFor((e) => e.some((x) => x.queueId === id && x.type === 'delivered'), 10_000);
    const d = evs.find((e) => e.queueId === id && e.type === 'delivered');
    assert.ok(d, 'the transactional copy was delivered');
    const latency = Date.parse(d.at) - t0;
    const bulkDone = evs.filter((e) => e.type === 'delivered' && e.recipient!.startsWith('b')).length;
    console.log(`# transactional delivered ${latency} ms after acceptance; ${bulkDone} bulk copies delivered so far`);
    assert.ok(latency <= 2_000, `delivered ${latency} ms after acceptance`);
    assert.ok(bulkDone < BULK / 2, 'while the bulk backlog was still draining');
    const st = await h.delivery.status();
    assert.ok(st.states.ready <= 2_000, `bounded in memory: ${st.states.ready} ready`);
  } finally {
    await h.close();
    await s.close();
  }
});
