/*
 * Recipient counters projected from the event log: each event counted once,
 * also across a restart (the cursor moves in the same batch as the counters),
 * machine opens not counted as reading, and no counter for an address that
 * has no entry.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EventInput } from '../../../common/events.js';
import { CURSOR_KEY } from '../../../engine/recipients/projection.js';
import { until } from '../../helpers/fake-clock.js';
import { startRecipientsNode } from './harness.js';

const at = (m: number): string => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();

test('delivered, bounced, complained, opened and clicked update the entry once each, across a restart', async () => {
  let n = await startRecipientsNode();
  const dir = n.dir;
  try {
    await n.db.setFields('acme', 'ada@example.com', { first_name: 'Ada' });
    const ev = (type: EventInput['type'], m: number, extra: Partial<EventInput> = {}): EventInput => ({ type, account: 'acme', recipient: 'ada@EXAMPLE.com', at: at(m), ...extra });
    await n.events.append([
      ev('accepted', 0),
      ev('delivered', 1),
      ev('delivered', 5),
      ev('opened', 6, { machine: true }),
      ev('opened', 7, { machine: false }),
      ev('clicked', 8, { machine: true }),
      ev('bounced', 9, { bounce: { class: 'soft', status: '4.2.2' } }),
      ev('delivered', 3),
      ev('delivered', 2, { account: 'other' }), // same address, another account: no entry there
      ev('delivered', 2, { recipient: 'nobody@example.com' }),
    ]);
    await until(async () => n.projection.position >= 10, 'projection caught up');
    await n.projection.idle();
    let [v] = await n.db.viewMany('acme', ['ada@example.com']);
    assert.equal(v!.sent, 3);
    assert.equal(v!.bounced, 1);
    assert.equal(v!.complained, 0);
    assert.equal(v!.lastSent, at(5));
    assert.equal(v!.lastOpened, at(7), 'the machine open at :06 is not a reader');
    assert.equal(v!.lastClicked, undefined, 'a link scanner is not a click');
    assert.deepEqual(v!.fields, { first_name: 'Ada' }, 'fields untouched by the counters');
    assert.equal((await n.db.viewMany('other', ['ada@example.com']))[0], undefined, 'no entry created for the other account');
    assert.equal((await n.db.viewMany('acme', ['nobody@example.com']))[0], undefined);

    // Restart on the same data: nothing counted twice; new events counted.
    await n.close();
    n = await startRecipientsNode(dir);
    assert.equal(Number((await n.store.db.get(CURSOR_KEY))!.toString()), 10);
    await n.events.append([ev('complained', 11), ev('clicked', 12, { machine: false })]);
    await until(async () => n.projection.position >= 12, 'projection caught up after restart');
    await n.projection.idle();
    [v] = await n.db.viewMany('acme', ['ada@example.com']);
    assert.deepEqual([v!.sent, v!.bounced, v!.complained, v!.lastClicked], [3, 1, 1, at(12)]);
  } finally {
    await n.close();
  }
});

test('the counters appear on the API and filter by last sent', async () => {
  const n = await startRecipientsNode();
  try {
    await n.api('/api/recipients/x@example.com?account=acme', { method: 'PUT', body: { fields: {} } });
    await n.api('/api/recipients/y@example.com?account=acme', { method: 'PUT', body: { fields: {} } });
    await n.events.append([{ type: 'delivered', account: 'acme', recipient: 'x@example.com', at: at(30) }]);
    await until(async () => n.projection.position >= 1, 'counted');
    await n.projection.idle();
    const r = (await (await n.api(`/api/recipients?account=acme&lastSentFrom=${at(30)}&lastSentTo=${at(31)}`)).json()) as { recipients: Array<{ address: string; sent: number; lastSent: string }> };
    assert.deepEqual(r.recipients.map((e) => [e.address, e.sent, e.lastSent]), [['x@example.com', 1, at(30)]]);
  } finally {
    await n.close();
  }
});
