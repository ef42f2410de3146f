/*
 * The shared SMTP intake against raw sockets: allowlist at connect, 552 for an
 * oversized message with the session still usable, 250 only for what is queued.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { DurableQueue } from '../../common/durable-queue.js';
import { startIntake, type Envelope, type Intake } from '../../common/smtp-intake.js';
import { Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

let store: Store;
let queue: DurableQueue<{ envelope: Envelope }>;
let intake: Intake;

before(async () => {
  store = await Store.open(tempDir('intake'));
  queue = await DurableQueue.open(store, 'spool', { inlineMaxBytes: 1024 });
  intake = await startIntake({
    name: 'test',
    host: '127.0.0.1',
    port: 0,
    maxSize: 4000,
    maxRecipients: 2,
    greetingDelayMs: 100,
    trustedNetworks: ['127.0.0.1/32'],
    allowNetworks: ['127.0.0.1/32', '127.0.0.3/32', '::1/128'],
    idleTimeoutMs: 10_000,
    queue,
    toMeta: (envelope) => ({ envelope }),
    log: pino({ level: 'silent' }),
  });
});

after(async () => {
  await intake.close();
  await store.close();
});

async function transaction(c: RawSmtp, body: string): Promise<string> {
  assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250/);
  assert.match(await c.cmd('RCPT TO:<b@example.com>'), /^250/);
  assert.match(await c.cmd('DATA'), /^354/);
  c.write(body + '\r\n.\r\n');
  return c.reply();
}

test('a client outside allowNetworks gets 554 5.7.1 at connect', async () => {
  const c = await RawSmtp.connect(intake.port, '127.0.0.1', '127.0.0.2');
  assert.match(await c.reply(), /^554 5\.7\.1 /);
  c.close();
});

test('oversized DATA gets 552 5.3.4, nothing is queued, and the session stays usable', async () => {
  const before = queue.size;
  const c = await RawSmtp.connect(intake.port);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.cmd('EHLO t'), /SIZE 4000/);
  const big = 'Subject: big\r\n\r\n' + ('x'.repeat(70) + '\r\n').repeat(100);
  assert.match(await transaction(c, big), /^552 5\.3\.4 /);
  assert.equal(queue.size, before, 'nothing queued');
  assert.match(await transaction(c, 'Subject: small\r\n\r\nhello'), /^250 2\.0\.0 Ok: queued as /);
  assert.equal(queue.size, before + 1);
  assert.match(await c.cmd('MAIL FROM:<a@example.org> SIZE=5000'), /^552/, 'a declared size above the limit is refused up front');
  c.close();
});

test('recipient limit: the third RCPT is refused', async () => {
  const c = await RawSmtp.connect(intake.port);
  await c.reply();
  await c.cmd('EHLO t');
  await c.cmd('MAIL FROM:<a@example.org>');
  assert.match(await c.cmd('RCPT TO:<1@example.com>'), /^250/);
  assert.match(await c.cmd('RCPT TO:<2@example.com>'), /^250/);
  assert.match(await c.cmd('RCPT TO:<3@example.com>'), /^452/);
  c.close();
});

async function greetingMs(localAddress: string): Promise<number> {
  const t0 = performance.now();
  const c = await RawSmtp.connect(intake.port, '127.0.0.1', localAddress);
  assert.match(await c.reply(), /^220 /);
  c.close();
  return performance.now() - t0;
}

test('trusted clients are greeted at once; others only after the early-talker delay', async () => {
  const trusted = await greetingMs('127.0.0.1');
  const untrusted = await greetingMs('127.0.0.3');
  assert.ok(trusted < 80, `trusted greeting after ${trusted.toFixed(1)} ms`);
  assert.ok(untrusted >= 95, `untrusted greeting after ${untrusted.toFixed(1)} ms`);
});

test('an early talker outside the trusted networks is refused', async () => {
  const c = await RawSmtp.connect(intake.port, '127.0.0.1', '127.0.0.3');
  c.write('EHLO spammer\r\n');
  assert.match(await c.reply(), /^421 .*talk too soon/);
  c.close();
});
