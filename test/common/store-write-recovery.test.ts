/*
 * A LevelDB write error (a full disk, simulated through Store's writeFault seam:
 * everything else is real — the SMTP intake on a loopback socket, LevelDB on
 * disk) never turns into a 250 or a crash: the intake answers 451 4.3.0 while
 * the store reopens the database with backoff, and intake resumes by itself once
 * writes succeed again. What was acknowledged before and after is on disk (read
 * back after a close and reopen); what got 451 is not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { DurableQueue } from '../../common/durable-queue.js';
import { Store } from '../../common/store.js';
import { until } from '../helpers/fake-clock.js';
import { loopbackIntake, type EnvelopeMeta } from '../helpers/intake.js';
import { tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

async function send(port: number, subject: string): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO app.test');
    assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<b@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    return await c.cmd(`Subject: ${subject}\r\n\r\nbody of ${subject}\r\n.`);
  } finally {
    c.close();
  }
}

test('disk full: 451 4.3.0 meanwhile (never 250, no crash), the database is reopened with backoff, intake resumes, nothing acknowledged is lost', { timeout: 60_000 }, async () => {
  const dir = tempDir('store-recovery');
  let diskFull = false;
  const logs: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) });
  const enospc = (): Error => Object.assign(new Error('IO error: /db/000005.log: No space left on device'), { code: 'LEVEL_IO_ERROR' });
  let store = await Store.open(dir, { log, writeFault: () => (diskFull ? enospc() : undefined) });
  let queue = await DurableQueue.open<EnvelopeMeta>(store, 'spool');
  const intake = await loopbackIntake(queue, log);
  try {
    assert.match(await send(intake.port, 'before'), /^250 2\.0\.0 /);

    diskFull = true;
    assert.match(await send(intake.port, 'full-1'), /^451 4\.3\.0 /, 'the failed write is a temporary failure');
    assert.equal(store.healthy, false);
    assert.match(await send(intake.port, 'full-2'), /^451 4\.3\.0 .*recovering/, 'refused at once while broken');
    // The store keeps trying (close, open, probe write) while the disk is full.
    await until(() => logs.filter((l) => l.event === 'store-still-failing').length >= 2, 'two failed reopen attempts', 10_000);
    assert.match(await send(intake.port, 'full-3'), /^451 4\.3\.0 /);

    diskFull = false; // an operator freed space
    await until(() => store.healthy, 'the store recovered', 10_000);
    assert.ok(store.stats.reopens >= 3, `reopened ${store.stats.reopens} times`);
    assert.ok(logs.some((l) => l.event === 'store-write-failed') && logs.some((l) => l.event === 'store-recovered'));
    assert.match(await send(intake.port, 'after'), /^250 2\.0\.0 /, 'intake resumes without a restart');
  } finally {
    await intake.close();
    await store.close();
  }

  // Read back from disk: exactly the two acknowledged messages.
  store = await Store.open(dir);
  try {
    queue = await DurableQueue.open<EnvelopeMeta>(store, 'spool');
    const recs = await queue.lease(10, 60_000);
    const subjects = await Promise.all(recs.map(async (r) => /^Subject: (.*)\r$/m.exec((await queue.readBody(r)).toString())?.[1]));
    assert.deepEqual(subjects.sort(), ['after', 'before']);
  } finally {
    await store.close();
  }
});
