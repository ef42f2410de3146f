/* The engine-side kill-switch: per account and global, persisted across a restart. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startDeliveryHarness, sink } from '../../helpers/delivery-harness.js';
import { tempDir } from '../../helpers/postino.js';
import { readSink } from '../../helpers/sink-reader.js';

test('pausing one account holds only its copies; a global pause survives a restart; resume delivers', { timeout: 30_000 }, async () => {
  const s = await sink();
  const dir = tempDir('ks');
  const raw = { accounts: [{ id: 'default' }, { id: 'shop' }], delivery: { relays: [`smtp://127.0.0.1:${s.port}`], pausedRecheckSeconds: 0.2 } };
  let h = await startDeliveryHarness(raw, dir);
  try {
    await h.delivery.killSwitch.pause('shop', { reason: 'complaint spike', by: 'ops' });
    await h.send('x@example.com', { account: 'shop' });
    await h.send('y@example.com', { account: 'default' });
    await h.waitFor((e) => e.some((x) => x.recipient === 'y@example.com' && x.type === 'delivered'), 10_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(readSink(s.dir).map((m) => m.rcptTo[0]), ['y@example.com'], 'the other account is not held');

    await h.delivery.killSwitch.pause();
    await h.close();
    h = await startDeliveryHarness(raw, dir);
    assert.deepEqual(h.delivery.killSwitch.state(), { global: true, accounts: ['shop'] }, 'both pauses survive the restart');
    const d = h.delivery.killSwitch.details();
    assert.deepEqual({ reason: d.accounts.shop?.reason, by: d.accounts.shop?.by }, { reason: 'complaint spike', by: 'ops' }, 'the reason and who survive too');
    assert.ok(d.global && !d.global.reason && d.global.at, 'a pause without a reason keeps its time');
    await h.send('z@example.com', { account: 'default' });
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(readSink(s.dir).length, 1, 'nothing delivered while paused');
    const st = await h.delivery.status();
    assert.equal(st.total, 2);
    assert.equal(st.paused.global, true);

    await h.delivery.killSwitch.resume();
    await h.waitFor((e) => e.some((x) => x.recipient === 'z@example.com' && x.type === 'delivered'), 10_000);
    assert.equal(readSink(s.dir).length, 2, 'z delivered; the shop account is still paused');
    await h.delivery.killSwitch.resume('shop');
    await h.waitFor((e) => e.some((x) => x.recipient === 'x@example.com' && x.type === 'delivered'), 10_000);
    assert.equal(readSink(s.dir).length, 3);
  } finally {
    await h.close();
    await s.close();
  }
});
