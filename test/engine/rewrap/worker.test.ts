/*
 * The rewrap worker with real queues in one LevelDB: the move from intake to
 * delivery, the copies' due times and the events commit in one batch.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import { DurableQueue } from '../../../common/durable-queue.js';
import type { IntakeMeta } from '../../../common/intake-record.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import type { DeliveryMeta } from '../../../engine/delivery/delivery-record.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { LevelRecipientDb } from '../../../engine/recipient-db.js';
import { resolveRewrapSettings } from '../../../engine/rewrap/settings.js';
import { BATCH_MAX_COPIES, RewrapWorker } from '../../../engine/rewrap/worker.js';
import { LevelSuppressionList } from '../../../engine/suppression.js';
import { CopyIndex } from '../../../engine/feedback/copy-index.js';

async function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-rw-'));
  const store = await Store.open(path.join(dir, 'hosted'));
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake', { inlineMaxBytes: 1024 });
  const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = new LevelSuppressionList(store);
  const recipients = new LevelRecipientDb(store);
  const config = parseConfig({ accounts: [{ id: 'default', engine: { bounceDomain: 'b.example.net' } }] });
  const worker = new RewrapWorker({ intake, delivery, events, services: { suppression, recipients, copies: new CopyIndex(store) }, settings: resolveRewrapSettings(config, dir), log: createLogger('test', 'silent') });
  const submit = async (raw: string, rcptTo: string[], extra: Partial<IntakeMeta> = {}) => {
    await intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'shop@example.org', rcptTo, clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true }, ...extra }, body: Buffer.from(raw.replace(/\r?\n/g, '\r\n')) });
    const [rec] = await intake.lease(1, 60_000);
    await worker.handle(rec!);
  };
  const deliveries = async () => {
    const out = [];
    for await (const r of delivery.records()) out.push(r);
    return out;
  };
  return { dir, store, intake, delivery, events, suppression, recipients, worker, submit, deliveries, close: async () => { await store.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

test('copies, accepted/scheduled/suppressed events and recipient entries land together; intake is emptied', async () => {
  const t = await setup();
  try {
    await t.suppression.add('default', { address: 'gone@example.com', scope: '*', reason: 'hard-bounce' });
    const at = new Date(Date.now() + 3_600_000);
    // The body is above inlineMaxBytes: the intake message is a blob file, read by range.
    const raw = `From: shop@example.org\nTo: a@example.com\nSubject: x\nMessage-ID: <m@example.org>\nX-Postino-Tag: order-9\nX-Postino-Send-At: ${at.toISOString()}\n\n${'line of text\n'.repeat(200)}`;
    await t.submit(raw, ['a@example.com', 'gone@example.com', 'c@example.com']);
    assert.equal(t.intake.size, 0);
    const copies = await t.deliveries();
    assert.deepEqual(copies.map((c) => c.meta.recipient).sort(), ['a@example.com', 'c@example.com']);
    for (const c of copies) {
      assert.equal(c.due, at.getTime(), 'parked until the send time');
      assert.match(c.meta.envelope.mailFrom, /^bounces\+.+@b\.example\.net$/);
      assert.equal(c.meta.messageId, '<m@example.org>');
      assert.equal(c.meta.tag, 'order-9');
      assert.ok((await t.delivery.readBody(c)).toString().includes('line of text\r\n'.repeat(200)));
    }
    const events = await t.events.read(0, 100);
    const summary = events.map((e) => `${e.type}:${e.recipient}`).sort();
    assert.deepEqual(summary, ['accepted:a@example.com', 'accepted:c@example.com', 'scheduled:a@example.com', 'scheduled:c@example.com', 'suppressed:gone@example.com']);
    const accepted = events.find((e) => e.type === 'accepted')!;
    assert.equal(accepted.messageId, '<m@example.org>');
    assert.equal(accepted.tag, 'order-9');
    assert.ok(copies.some((c) => c.id === accepted.queueId), 'the event names the copy\'s own queue id');
    assert.equal(events.find((e) => e.type === 'suppressed')!.reason, 'hard-bounce (account)');
    assert.ok(await t.recipients.get('default', 'c@example.com'), 'recipient database entry created from traffic');
  } finally {
    await t.close();
  }
});

test('a message the rewrap rejects leaves no copy, only `rejected` events', async () => {
  const t = await setup();
  try {
    await t.submit('From: shop@example.org\nTo: a@example.com\nX-Postino-Vars: [1,2]\nSubject: x\n\nhi\n', ['a@example.com', 'b@example.com']);
    assert.equal(t.intake.size, 0);
    assert.equal((await t.deliveries()).length, 0);
    const events = await t.events.read(0, 100);
    assert.deepEqual(events.map((e) => `${e.type}:${e.recipient}`), ['rejected:a@example.com', 'rejected:b@example.com']);
    assert.equal(events[0]!.reason, 'X-Postino-Vars is not a JSON object');
  } finally {
    await t.close();
  }
});

test('copies commit in batches: a crash after the first batch resumes at the next recipient, each recipient gets exactly one copy', async () => {
  const t = await setup();
  try {
    const n = BATCH_MAX_COPIES * 2 + 50;
    const rcpts = Array.from({ length: n }, (_, i) => `r${i}@example.com`);
    const raw = 'From: shop@example.org\r\nTo: list@example.com\r\nSubject: x\r\n\r\nhello\r\n';
    await t.intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'shop@example.org', rcptTo: rcpts, clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body: Buffer.from(raw) });
    const prepare = t.delivery.prepare.bind(t.delivery);
    let made = 0;
    t.delivery.prepare = async (input) => {
      if (++made === BATCH_MAX_COPIES + 30) throw new Error('crash in the middle of the second batch');
      return prepare(input);
    };
    const [rec] = await t.intake.lease(1, 60_000);
    await assert.rejects(t.worker.handle(rec!), /crash in the middle/);
    const after1 = (await t.intake.get(rec!.id))!;
    assert.equal(after1.meta.resumeAt, BATCH_MAX_COPIES, 'progress committed with the first batch');
    assert.equal((await t.deliveries()).length, BATCH_MAX_COPIES, 'the first batch only: the second was not committed');
    assert.equal((await t.events.read(0, 10_000)).filter((e) => e.type === 'accepted').length, BATCH_MAX_COPIES);
    t.delivery.prepare = prepare;
    assert.ok(await t.intake.nack(after1, 0), 'given back as after a crash');
    const [again] = await t.intake.lease(1, 60_000);
    assert.equal(again!.meta.resumeAt, BATCH_MAX_COPIES);
    await t.worker.handle(again!);
    assert.equal(t.intake.size, 0);
    const copies = (await t.deliveries()).map((c) => c.meta.recipient).sort();
    assert.deepEqual(copies, [...rcpts].sort(), 'every recipient exactly once');
    const accepted = (await t.events.read(0, 10_000)).filter((e) => e.type === 'accepted').map((e) => e.recipient).sort();
    assert.deepEqual(accepted, [...rcpts].sort());
  } finally {
    await t.close();
  }
});

test('a copy whose body the rewrap leaves unchanged refers to the intake body (one recipient only); the body goes once the copy is delivered', async () => {
  const t = await setup();
  try {
    const text = 'Your order has shipped.\r\n'.repeat(20);
    await t.submit(`From: shop@example.org\nTo: a@example.com\nSubject: shipped\nMessage-ID: <s@example.org>\n\n${text}`, ['a@example.com']);
    assert.equal(t.intake.size, 0);
    const [copy] = await t.deliveries();
    assert.ok(copy!.body.kind === 'inline' && copy!.body.tail, 'the copy holds its head and refers to the intake body');
    const bytes = await t.delivery.readBody(copy!);
    assert.equal(bytes.length, copy!.body.size);
    const split = bytes.indexOf('\r\n\r\n') + 4;
    assert.equal(bytes.subarray(split).toString(), text, 'the body, byte for byte, after the rewrapped header');
    assert.match(bytes.subarray(0, split).toString(), /^X-Message-Ref: [\s\S]*^Received: |^Received: [\s\S]*^X-Message-Ref: /m, 'the header block is the copy\'s own');
    assert.ok(t.store.getNow(copy!.body.tail!.key), 'the intake record is gone, its body is not');
    const [leased] = await t.delivery.lease(1, 60_000);
    await t.delivery.ack(leased!);
    assert.equal(t.store.getNow(copy!.body.tail!.key), undefined, 'delivered: the body went with the copy');

    // A body over the intake's inlineMaxBytes (1024 here) is a blob file: the copy refers to the file.
    const long = 'A longer receipt line.\r\n'.repeat(100);
    await t.submit(`From: shop@example.org\nTo: e@example.com\nSubject: receipt\n\n${long}`, ['e@example.com']);
    const [big] = await t.deliveries();
    assert.ok(big!.body.kind === 'file' && big!.body.from !== undefined, 'the copy holds its head and refers to the intake file');
    assert.ok((await t.delivery.readBody(big!)).toString().endsWith(`\r\n\r\n${long}`));
    const blobs = (): string[] => fs.readdirSync(path.join(t.dir, 'hosted', 'blobs'));
    assert.deepEqual(blobs(), [big!.body.name], 'the intake record is gone, its file is not');
    const [bigLeased] = await t.delivery.lease(1, 60_000);
    await t.delivery.ack(bigLeased!);
    assert.deepEqual(blobs(), [], 'delivered: the file went with the copy');

    // Not when the body changes (an open pixel) or when there is more than one copy to own it.
    const html = '<html><body><p>Hello</p></body></html>\r\n';
    await t.submit(`From: shop@example.org\nTo: b@example.com\nSubject: hi\nX-Postino-Track: opens\nContent-Type: text/html\n\n${html}`, ['b@example.com']);
    await t.submit(`From: shop@example.org\nTo: c@example.com, d@example.com\nSubject: two\n\n${text}`, ['c@example.com', 'd@example.com']);
    const rest = await t.deliveries();
    assert.equal(rest.length, 3);
    for (const c of rest) {
      assert.ok(c.body.kind === 'inline' && !c.body.tail, `${c.meta.recipient}: a body of its own`);
      const b = (await t.delivery.readBody(c)).toString();
      if (c.meta.recipient === 'b@example.com') assert.match(b, /<img[^>]+\/o\//, 'the pixel is in');
      else assert.ok(b.endsWith(text));
    }
  } finally {
    await t.close();
  }
});

test('a copy that is its header and then the intake bytes the listener found clean says where they start (cleanFrom); any other copy does not', async () => {
  const t = await setup();
  try {
    const raw = (subject: string, text: string): string => `From: shop@example.org\nTo: a@example.com\nSubject: ${subject}\n\n${text}`;
    // Clean, one recipient (handed over) and two (written out): both say where the intake's bytes start.
    await t.submit(raw('one', 'line of text\n'.repeat(200)), ['a@example.com'], { cleanLines: true });
    await t.submit(raw('two', 'short\n'), ['a@example.com', 'b@example.com'], { cleanLines: true });
    // Not marked by the listener (a dot-led line, or not from the listener at all): no offset.
    await t.submit(raw('dots', '.dot-led\n'), ['a@example.com']);
    const copies = await t.deliveries();
    for (const c of copies) {
      const body = await t.delivery.readBody(c);
      const subject = /^Subject: (\w+)/m.exec(body.toString())![1];
      if (subject === 'dots') {
        assert.equal(c.meta.cleanFrom, undefined);
        continue;
      }
      assert.equal(typeof c.meta.cleanFrom, 'number', subject);
      // The copy's own header ends there, with its empty line; what follows is the intake message's body.
      assert.equal(body.subarray(c.meta.cleanFrom! - 4, c.meta.cleanFrom!).toString(), '\r\n\r\n', subject);
      const expected = subject === 'one' ? 'line of text\r\n'.repeat(200) : 'short\r\n';
      assert.equal(body.subarray(c.meta.cleanFrom!).toString(), expected, subject);
    }
    assert.equal(copies.length, 4);
  } finally {
    await t.close();
  }
});

test('a copy whose body the rewrap changes (a footer) gets no cleanFrom, even from clean intake bytes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-rw-'));
  const store = await Store.open(path.join(dir, 'hosted'));
  try {
    const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
    const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
    const config = parseConfig({ accounts: [{ id: 'default', engine: { footer: { enabled: true, text: 'Unsubscribe: {{unsubscribe_url}}' } } }], engine: { publicUrl: 'https://mail.example.net' } });
    const worker = new RewrapWorker({ intake, delivery, events: await EventLog.open(store), services: { suppression: new LevelSuppressionList(store), recipients: new LevelRecipientDb(store), copies: new CopyIndex(store) }, settings: resolveRewrapSettings(config, dir), log: createLogger('test', 'silent') });
    await intake.enqueue({ meta: { account: 'default', cleanLines: true, envelope: { mailFrom: 'shop@example.org', rcptTo: ['a@example.com'], clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body: Buffer.from('From: shop@example.org\r\nTo: a@example.com\r\nSubject: f\r\n\r\nhello\r\n') });
    const [rec] = await intake.lease(1, 60_000);
    await worker.handle(rec!);
    const [copy] = await delivery.lease(1, 60_000);
    assert.match((await delivery.readBody(copy!)).toString(), /Unsubscribe: https:/, 'the footer is there');
    assert.equal(copy!.meta.cleanFrom, undefined);
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
