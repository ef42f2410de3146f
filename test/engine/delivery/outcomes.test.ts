/*
 * Result handling per copy against a real capture sink with reply rules:
 * 451 three times then 250, 550 5.1.1 (hard bounce → suppression), always
 * 451 with a short maxAge (expired), and a back-pressure rule in the event.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { CaptureSink } from '../../../sink/capture-sink.js';
import { startDeliveryHarness, sink, type Harness } from '../../helpers/delivery-harness.js';
import { readSink } from '../../helpers/sink-reader.js';

let s: CaptureSink;
let h: Harness;

before(async () => {
  s = await sink([
    { recipient: 'greylist@example.com', reply: '451 4.7.1 Greylisted, come back later', times: 3 },
    { recipient: 'nobody@example.com', reply: '550 5.1.1 No such user here' },
    { recipient: 'full@example.com', reply: '552 5.2.2 Mailbox full' },
    { recipient: '@down.test', reply: '451 4.3.0 Temporary local problem' },
    { recipient: '@busy.test', reply: '451 4.7.0 Too busy, try again later' },
    { recipient: 'first@crowded.test', reply: '451 4.7.0 Too many connections from your IP', times: 1 },
  ]);
  h = await startDeliveryHarness({
    delivery: {
      relays: [`smtp://127.0.0.1:${s.port}`],
      retryScheduleSeconds: [0.3],
      maxAgeSeconds: 10,
      backPressure: [
        { name: 'busy', match: 'try again later', action: 'suspend', seconds: 2 },
        { name: 'crowded', match: 'too many connections', action: 'slow', seconds: 30, messagesPerSecond: 2 },
      ],
    },
  });
});

after(async () => {
  await h.close();
  await s.close();
});

test('451 for the first 3 attempts: delivered on the 4th, after three deferred events', async () => {
  const id = await h.send('greylist@example.com');
  const evs = await h.waitFor((e) => e.some((x) => x.queueId === id && x.type === 'delivered'), 20_000);
  const mine = evs.filter((e) => e.queueId === id);
  assert.deepEqual(mine.map((e) => e.type), ['deferred', 'deferred', 'deferred', 'delivered']);
  for (const d of mine.slice(0, 3)) {
    assert.equal(d.smtp?.code, 451);
    assert.equal(d.smtp?.enhanced, '4.7.1');
    assert.match(d.smtp!.response, /Greylisted/);
    assert.ok(d.nextAttemptAt && Date.parse(d.nextAttemptAt) > Date.parse(d.at), 'says when the next attempt is');
  }
  const delivered = mine[3]!;
  assert.equal(delivered.smtp?.code, 250);
  assert.match(delivered.smtp!.response, /captured as/, "the relay's response text");
  assert.equal(delivered.recipient, 'greylist@example.com');
  assert.equal(delivered.sender, 'shop@example.org');
  const seqs = evs.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'seq strictly increasing');
  assert.equal(readSink(s.dir).filter((m) => m.rcptTo[0] === 'greylist@example.com').length, 1, 'one copy in the sink');
});

test('550 5.1.1: one bounced event of class hard, the address is suppressed, the next copy is suppressed without an attempt', async () => {
  const id = await h.send('nobody@example.com');
  let evs = await h.waitFor((e) => e.some((x) => x.queueId === id && x.type === 'bounced'), 10_000);
  const b = evs.filter((e) => e.queueId === id);
  assert.equal(b.length, 1, 'exactly one event');
  assert.equal(b[0]!.type, 'bounced');
  assert.deepEqual(b[0]!.bounce, { class: 'hard', status: '5.1.1', source: 'smtp' });
  assert.equal(b[0]!.smtp?.code, 550);
  const entry = await h.suppression.check('default', 'nobody@example.com', { stream: 'transactional' });
  assert.equal(entry?.reason, 'hard-bounce');

  const id2 = await h.send('nobody@example.com');
  evs = await h.waitFor((e) => e.some((x) => x.queueId === id2), 10_000);
  const next = evs.filter((e) => e.queueId === id2);
  assert.deepEqual(next.map((e) => e.type), ['suppressed']);
  assert.equal(h.queue.size, 0, 'nothing left queued for it');
});

test('552 5.2.2 (mailbox full) is a soft bounce and suppresses nobody', async () => {
  const id = await h.send('full@example.com');
  const evs = await h.waitFor((e) => e.some((x) => x.queueId === id), 10_000);
  const b = evs.find((e) => e.queueId === id)!;
  assert.equal(b.type, 'bounced');
  assert.deepEqual(b.bounce, { class: 'soft', status: '5.2.2', source: 'smtp' });
  assert.equal(await h.suppression.check('default', 'full@example.com', { stream: 'transactional' }), undefined);
});

test('a back-pressure rule matching the 4xx text is named in the deferred event and holds the destination', async () => {
  const id = await h.send('x@busy.test');
  const evs = await h.waitFor((e) => e.some((x) => x.queueId === id), 10_000);
  const d = evs.find((e) => e.queueId === id)!;
  assert.equal(d.type, 'deferred');
  assert.equal(d.rule, 'busy', JSON.stringify(d));
  assert.match(d.smtp!.response, /try again later/);
  assert.ok(Date.parse(d.nextAttemptAt!) - Date.parse(d.at) >= 1_900, 'next attempt after the 2 s suspension, not the 0.3 s schedule');
  const lane = h.delivery.scheduler.lanesStatus().find((l) => l.domain === 'busy.test');
  assert.ok(lane?.suspendedUntil, 'busy.test is suspended');
  assert.equal(lane?.rule, 'busy');
});

test('always 451 with maxAge 10 s: an expired event, no earlier than 10 s after acceptance', { timeout: 30_000 }, async () => {
  const t0 = Date.now();
  const id = await h.send('a@down.test');
  const evs = await h.waitFor((e) => e.some((x) => x.queueId === id && x.type === 'expired'), 20_000);
  const mine = evs.filter((e) => e.queueId === id);
  const expired = mine.find((e) => e.type === 'expired');
  assert.ok(expired, 'expired');
  assert.ok(Date.parse(expired.at) - t0 >= 10_000, `expired after ${Date.parse(expired.at) - t0} ms`);
  assert.ok(mine.filter((e) => e.type === 'deferred').length >= 2, 'retried until then');
  assert.equal(mine.at(-1)!.type, 'expired', 'expired is the last event');
  assert.match(expired.reason!, /Temporary local problem/, 'the last reply is given');
});

test('a "slow" rule lowers the destination to its rate: later copies to it leave at 2 msg/s', { timeout: 30_000 }, async () => {
  const first = await h.send('first@crowded.test');
  let evs = await h.waitFor((e) => e.some((x) => x.queueId === first && x.type === 'delivered'), 10_000);
  assert.equal(evs.find((e) => e.queueId === first)?.rule, 'crowded');
  const lane = h.delivery.scheduler.lanesStatus().find((l) => l.domain === 'crowded.test');
  assert.equal(lane?.messagesPerSecond, 2);
  assert.ok(lane?.slowedUntil);
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push(await h.send(`n${i}@crowded.test`));
  evs = await h.waitFor((e) => ids.every((id) => e.some((x) => x.queueId === id && x.type === 'delivered')), 15_000);
  const at = ids.map((id) => Date.parse(evs.find((e) => e.queueId === id && e.type === 'delivered')!.at)).sort((a, b) => a - b);
  const rate = (at.length - 1) / ((at.at(-1)! - at[0]!) / 1000);
  assert.ok(rate <= 2.4, `slowed to ${rate.toFixed(2)} msg/s`);
});

test('queue status: counts per state and domain, oldest age, drain estimate from the recent rate', async () => {
  await h.delivery.killSwitch.pause();
  try {
    for (let i = 0; i < 4; i++) await h.send(`q${i}@status.test`);
    const st = await h.delivery.status();
    assert.equal(st.paused.global, true);
    const d = st.domains.find((x) => x.domain === 'status.test');
    assert.equal(d?.total, 4);
    assert.ok(st.states.queued >= 4);
    assert.ok(st.ratePerSecond > 0, 'copies were delivered in the last minute');
    assert.equal(typeof st.estimatedDrainSeconds, 'number');
    assert.ok(st.oldestAgeSeconds >= 0);
    assert.ok(st.outcomes.delivered! >= 1 && st.outcomes.bounced! >= 2);
  } finally {
    await h.delivery.killSwitch.resume();
  }
  await h.waitFor((e) => e.filter((x) => x.recipient?.endsWith('@status.test') && x.type === 'delivered').length === 4, 10_000);
});
