/*
 * The shared SMTP intake against raw sockets: allowlist at connect, 552 for an
 * oversized message with the session still usable, 250 only for what is queued.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
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

test('a body the spool cannot store (its blob file cannot be created) mid-DATA: 451 4.3.0 after the final dot, nothing queued, the session goes on', { timeout: 60_000 }, async () => {
  // Its own intake: a limit well above the DATA stream's buffer, so that what follows the
  // failure is more than the reader would hold before pausing the session (were it not let go).
  const s = await Store.open(tempDir('intake-spill'));
  const q = await DurableQueue.open(s, 'spool', { inlineMaxBytes: 1024 });
  const i = await startIntake({
    name: 'test', host: '127.0.0.1', port: 0, maxSize: 1 << 20, maxRecipients: 2, greetingDelayMs: 0,
    trustedNetworks: ['127.0.0.1/32'], idleTimeoutMs: 10_000, queue: q, strictData: true,
    toMeta: (envelope) => ({ envelope }), log: pino({ level: 'silent' }),
  });
  const blobs = s.blobDir;
  fs.renameSync(blobs, `${blobs}.away`);
  fs.writeFileSync(blobs, 'not a folder'); // the blob file's open fails: ENOTDIR
  try {
    const c = await RawSmtp.connect(i.port);
    assert.match(await c.reply(), /^220 /);
    await c.cmd('EHLO t');
    assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<b@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    const line = 'x'.repeat(76) + '\r\n';
    c.write('Subject: spill\r\n\r\n' + line.repeat(40)); // past inlineMaxBytes: the queue spills, and fails
    await new Promise((r) => setTimeout(r, 200));
    c.write(line.repeat(4000) + '.\r\n'); // 312 KB after the failure
    assert.match(await c.reply(15_000), /^451 4\.3\.0 /);
    assert.equal(q.size, 0, 'nothing queued');
    fs.rmSync(blobs);
    fs.renameSync(`${blobs}.away`, blobs);
    assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250/, 'the session is usable');
    assert.match(await c.cmd('RCPT TO:<b@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write('Subject: after\r\n\r\n' + line.repeat(40) + '.\r\n');
    assert.match(await c.reply(), /^250 2\.0\.0 Ok: queued as /);
    assert.equal(q.size, 1);
    c.close();
  } finally {
    if (fs.existsSync(`${blobs}.away`)) {
      fs.rmSync(blobs, { force: true });
      fs.renameSync(`${blobs}.away`, blobs);
    }
    await i.close();
    await s.close();
  }
});

test('a client gone mid-DATA, before or after the body spilled to a file: no blob file or descriptor left, nothing queued, an aborted line', { timeout: 60_000 }, async () => {
  const lines: string[] = [];
  const s = await Store.open(tempDir('intake-abort'));
  const q = await DurableQueue.open(s, 'spool', { inlineMaxBytes: 1024 });
  const i = await startIntake({
    name: 'test', host: '127.0.0.1', port: 0, maxSize: 1 << 20, maxRecipients: 2, greetingDelayMs: 0,
    trustedNetworks: ['127.0.0.1/32'], idleTimeoutMs: 10_000, queue: q, strictData: true,
    toMeta: (envelope) => ({ envelope }), log: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }),
  });
  const fds = (): number => fs.readdirSync('/proc/self/fd').length;
  try {
    const fdsBefore = fds();
    for (const size of [500, 50_000, 500, 50_000, 50_000]) {
      const c = await RawSmtp.connect(i.port);
      assert.match(await c.reply(), /^220 /);
      await c.cmd('EHLO t');
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('RCPT TO:<b@example.com>');
      assert.match(await c.cmd('DATA'), /^354/);
      c.write('Subject: gone\r\n\r\n' + ('y'.repeat(70) + '\r\n').repeat(Math.ceil(size / 72)));
      await new Promise((r) => setTimeout(r, 200));
      c.close();
    }
    const deadline = Date.now() + 5_000;
    while (lines.filter((l) => l.includes('"event":"aborted"')).length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(lines.filter((l) => l.includes('"event":"aborted"')).length, 5, 'one aborted line a session');
    assert.deepEqual(fs.readdirSync(s.blobDir), [], 'no partial blob file');
    assert.ok(fds() <= fdsBefore, `no descriptor left open (${fdsBefore} before, ${fds()} after)`);
    assert.equal(q.size, 0);
    assert.ok(!lines.some((l) => l.includes('spool write failed')), 'a client going away is not a spool failure');
  } finally {
    await i.close();
    await s.close();
  }
});
