/*
 * Privacy delete: the entry, fields and counters go; an account-wide
 * suppression stays (or is added); the events of the address show its
 * pseudonym instead, wherever it appeared, other recipients' events are
 * untouched; the deletion is an event; neither traffic nor an import brings
 * the entry back, an explicit PUT does; an erase job cut short resumes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PostinoEvent } from '../../../common/events.js';
import { eraseBatch, ERASE_JOB_PREFIX, type EraseJob } from '../../../engine/events/erase-recipient.js';
import { DELETED_DETAIL } from '../../../engine/recipients/erase.js';
import { startRecipientsNode } from './harness.js';

test('DELETE removes the entry, keeps a suppression, rewrites the events to the pseudonym and is itself an event', async () => {
  const n = await startRecipientsNode();
  try {
    await n.db.setFields('acme', 'Ada@Example.com', { first_name: 'Ada' });
    await n.db.setFields('acme', 'bob@example.com', { first_name: 'Bob' });
    await n.events.append([
      { type: 'delivered', account: 'acme', recipient: 'Ada@example.com', smtp: { code: 250, enhanced: '2.0.0', response: '250 2.0.0 OK <ADA@EXAMPLE.COM> queued' } },
      { type: 'bounced', account: 'acme', recipient: 'ada@example.com', reason: '550 5.1.1 <ada@example.com>: no such user', bounce: { class: 'hard', status: '5.1.1' } },
      { type: 'delivered', account: 'acme', recipient: 'bob@example.com' },
      { type: 'delivered', account: 'other', recipient: 'ada@example.com' },
    ]);
    const r = await n.api('/api/recipients/Ada@example.com?account=acme', { method: 'DELETE' });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { recipient: string };
    const pseudonym = n.pseudonyms.of('acme', 'ada@example.com');
    assert.equal(body.recipient, pseudonym);
    assert.match(pseudonym, /^erased:[0-9a-f]{32}$/);
    assert.equal(n.pseudonyms.of('acme', 'ADA@example.com'), pseudonym, 'stable whatever the case');
    assert.notEqual(n.pseudonyms.of('other', 'ada@example.com'), pseudonym, 'unlinkable across accounts');

    assert.equal((await n.api('/api/recipients/Ada@example.com?account=acme')).status, 404);
    const listed = (await (await n.api('/api/recipients?account=acme')).json()) as { recipients: Array<{ address: string }> };
    assert.deepEqual(listed.recipients.map((x) => x.address), ['bob@example.com']);
    const sup = await n.suppression.get('acme', 'Ada@example.com', '*');
    assert.equal(sup?.reason, 'manual');
    assert.equal(sup?.detail, DELETED_DETAIL);

    await n.eraser.idle();
    const all: PostinoEvent[] = await n.events.read(0, 100);
    const text = JSON.stringify(all.filter((e) => e.account === 'acme'));
    assert.ok(!/ada@example\.com/i.test(text), `no trace of the address in acme's events: ${text}`);
    assert.equal(all[0]!.recipient, pseudonym);
    assert.equal(all[0]!.smtp!.response, `250 2.0.0 OK <${pseudonym}> queued`);
    assert.equal(all[1]!.reason, `550 5.1.1 <${pseudonym}>: no such user`);
    assert.equal(all[2]!.recipient, 'bob@example.com', 'another recipient untouched');
    assert.equal(all[3]!.recipient, 'ada@example.com', "another account's recipient untouched");
    assert.deepEqual([all[0]!.seq, all[0]!.id, all[0]!.type], [1, all[0]!.id, 'delivered']);
    const deleted = all.find((e) => e.type === 'recipient.deleted')!;
    assert.equal(deleted.recipient, pseudonym);
    assert.equal(deleted.account, 'acme');
    const jobs = await n.store.db.keys({ gte: ERASE_JOB_PREFIX, lt: `${ERASE_JOB_PREFIX}\uffff` }).all();
    assert.deepEqual(jobs, [], 'the job (the last copy of the address outside the suppression list) is gone');

    // Traffic does not bring it back, nor does an import; an explicit PUT does.
    assert.deepEqual((await n.db.lookupForTraffic('acme', ['ada@example.com', 'new@example.com'])).erased, [true, false]);
    const imp = (await (await n.api('/api/recipients/import?account=acme', { method: 'POST', raw: 'address,first_name\nada@example.com,Ada\n', contentType: 'text/csv' })).json()) as { rejected: Array<{ line: number; reason: string }> };
    assert.match(imp.rejected[0]!.reason, /deleted on a privacy request/);
    assert.equal((await n.api('/api/recipients/ada@example.com?account=acme', { method: 'PUT', body: { fields: { first_name: 'Ada' } } })).status, 201);
    assert.deepEqual((await n.db.lookupForTraffic('acme', ['ada@example.com'])).erased, [false]);
    assert.equal((await n.api('/api/recipients/nobody@example.com?account=acme', { method: 'DELETE' })).status, 404);
  } finally {
    await n.close();
  }
});

test('an erase job resumes from its saved position and rewrites nothing twice', async () => {
  const n = await startRecipientsNode();
  try {
    await n.events.append(Array.from({ length: 1200 }, (_, i) => ({ type: 'delivered' as const, account: 'acme', recipient: i % 3 ? 'keep@example.com' : 'gone@example.com' })));
    const job: EraseJob = { id: 'j1', account: 'acme', address: 'gone@example.com', pseudonym: 'erased:test', upTo: 1200, after: 0 };
    const first = await eraseBatch(n.store, n.events, job);
    assert.equal(first.done, false);
    assert.equal(first.job.after, 500);
    assert.equal(first.rewritten, 167);
    const saved = JSON.parse((await n.store.db.get(`${ERASE_JOB_PREFIX}j1`))!.toString()) as EraseJob;
    assert.equal(saved.after, 500, 'progress saved with the rewritten events');
    // "Restart": the eraser finds the saved job and finishes it.
    n.eraser.start();
    await new Promise((r) => setTimeout(r, 50));
    await n.eraser.idle();
    const all = await n.events.read(0, 2000);
    assert.equal(all.filter((e) => e.recipient === 'erased:test').length, 400);
    assert.equal(all.filter((e) => e.recipient === 'gone@example.com').length, 0);
    assert.equal(all.filter((e) => e.recipient === 'keep@example.com').length, 800);
    assert.equal(await n.store.db.get(`${ERASE_JOB_PREFIX}j1`), undefined);
  } finally {
    await n.close();
  }
});
