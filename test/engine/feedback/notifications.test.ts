/*
 * Notifications to an account's IT staff: which events are summarised, one
 * mail per address per pass, the cursor that makes a summary go once, and
 * nothing about the notifications themselves.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import { DurableQueue } from '../../../common/durable-queue.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import type { DeliveryMeta } from '../../../engine/delivery/delivery-record.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { NOTIFY_TAG } from '../../../common/events.js';
import { Notifier } from '../../../engine/feedback/notifications.js';
import { tempDir } from '../../helpers/postino.js';

test('a digest lists hard bounces, blocks and complaints of its account only, once; soft bounces and our own notifications are left out', async () => {
  const store = await Store.open(path.join(tempDir('notify'), 'hosted'));
  try {
    const events = await EventLog.open(store);
    const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
    const config = parseConfig({ accounts: [{ id: 'acme', engine: { notify: { addresses: ['it@acme.example', 'ops@acme.example'], digestMinutes: 60 } } }, { id: 'other' }] });
    const n = new Notifier({ store, events, delivery, accounts: config.accounts, hostname: 'relay.example.net', log: createLogger('test', 'silent') });
    await events.append([
      { type: 'bounced', account: 'acme', recipient: 'gone@example.com', bounce: { class: 'hard', status: '5.1.1' }, tag: 'order-7', messageId: '<m1@acme>' },
      { type: 'bounced', account: 'acme', recipient: 'full@example.com', bounce: { class: 'soft', status: '5.2.2' } },
      { type: 'bounced', account: 'acme', recipient: 'strict@example.org', bounce: { class: 'block', status: '5.7.26' }, reason: 'DMARC policy' },
      { type: 'complained', account: 'acme', recipient: 'angry@example.net' },
      { type: 'bounced', account: 'other', recipient: 'not-ours@example.com', bounce: { class: 'hard', status: '5.1.1' } },
      { type: 'bounced', account: 'acme', recipient: 'it@acme.example', bounce: { class: 'hard', status: '5.1.1' }, tag: NOTIFY_TAG },
      { type: 'delivered', account: 'acme', recipient: 'fine@example.com' },
    ]);
    const acme = config.accounts[0]!;
    assert.equal(await n.flush(acme), 3);
    const queued = [];
    for await (const r of delivery.records()) queued.push(r);
    assert.deepEqual(queued.map((r) => r.meta.recipient).sort(), ['it@acme.example', 'ops@acme.example']);
    for (const r of queued) {
      assert.equal(r.meta.envelope.mailFrom, '');
      assert.equal(r.meta.tag, NOTIFY_TAG);
      const text = (await delivery.readBody(r)).toString('utf8');
      assert.match(text, /^Subject: Postino: 1 hard bounce, 1 blocked, 1 complaint for acme\r$/m);
      assert.match(text, /^Auto-Submitted: auto-generated\r$/m);
      assert.match(text, /bounce hard 5\.1\.1\s+gone@example\.com\s+\(tag order-7, message <m1@acme>\)/);
      assert.match(text, /bounce block 5\.7\.26\s+strict@example\.org.*"DMARC policy"/);
      assert.match(text, /complaint\s+angry@example\.net/);
      assert.doesNotMatch(text, /full@example\.com|not-ours|fine@example/);
    }
    assert.equal(await n.flush(acme), 0, 'the cursor moved: nothing is summarised twice');
    await events.append([{ type: 'complained', account: 'acme', recipient: 'late@example.net' }]);
    assert.equal(await n.flush(acme), 1, 'the next digest has only what is new');
    await n.stop();
  } finally {
    await store.close();
  }
});
