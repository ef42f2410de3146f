/*
 * Unique clicks through the real /t/c route and recorder: a person's first
 * click in a copy is marked `first`, later ones are not, a scanner's click is
 * a machine click; the statistics count clicked 2, uniqueClicked 1,
 * machineClicked 1 for that copy.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { indexEvents } from '../../../engine/events/events-stage.js';
import { startFeedbackNode } from '../../helpers/feedback.js';

const BROWSER = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36';

test("a person's first click in a copy is unique; repeats and scanners are not", async () => {
  const n = await startFeedbackNode();
  const { stats } = indexEvents(n.store, n.events);
  try {
    const c = await n.copy('ida@example.com');
    const target = 'https://shop.example.com/a';
    for (const ua of [BROWSER, BROWSER, 'Mozilla/5.0 (compatible; Barracuda Sentinel)']) {
      assert.equal((await fetch(c.clickUrl(target), { redirect: 'manual', headers: { 'user-agent': ua } })).status, 302);
    }
    const clicks = (await n.feed()).filter((e) => e.type === 'clicked');
    assert.deepEqual(clicks.map((e) => [e.machine, e.first]), [[false, true], [false, false], [true, undefined]]);
    const r = await stats.query({ groupBy: 'account', account: 'acme' });
    assert.deepEqual([r.total.clicked, r.total.uniqueClicked, r.total.machineClicked], [2, 1, 1]);
  } finally {
    await n.close();
  }
});
