/*
 * A poison message through `postino up` and the built CLI: an intake record
 * the rewrap cannot process (generated: its body is missing) is tried
 * engine.maxAttempts times, then moves to the failed records with a `failed`
 * event; the message queued behind it is delivered without waiting for those
 * attempts; `postino hosted status`, `/metrics` and `postino hosted failed
 * list|retry|delete` show and act on it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DurableQueue } from '../../common/durable-queue.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import type { PostinoEvent } from '../../common/events.js';
import { Store } from '../../common/store.js';
import { until } from '../helpers/fake-clock.js';
import { CLI, startUp, tempDir, upConfig } from '../helpers/postino.js';
import { waitForSink } from '../helpers/sink-reader.js';

const MESSAGE = (subject: string): Buffer => Buffer.from(`From: shop@example.org\r\nTo: ada@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\nhello\r\n`);

/** Both came through a forwarder (`forwarded`): a message the engine gives up on is reported to its sender with a DSN. */
function intakeMeta(rcpt: string): IntakeMeta {
  return { account: 'default', forwarded: true, envelope: { mailFrom: 'shop@example.org', rcptTo: [rcpt], clientAddress: '127.0.0.1', heloName: 'app.test', receivedAt: Date.now(), tls: false } };
}

/** Seeds the hosted intake queue before start: a poison record (body deleted), then a normal message behind it. */
async function seed(dataDir: string): Promise<{ poison: string; normal: string }> {
  const store = await Store.open(path.join(dataDir, 'hosted'));
  try {
    const q = await DurableQueue.open<IntakeMeta>(store, 'intake');
    const poison = await q.enqueue({ meta: intakeMeta('poison@example.com'), body: MESSAGE('poison') });
    await store.db.del(`q!intake!b!${poison.id}`);
    const normal = await q.enqueue({ meta: intakeMeta('ada@example.com'), body: MESSAGE('normal'), due: poison.due + 1 });
    return { poison: poison.id, normal: normal.id };
  } finally {
    await store.close();
  }
}

function cli(dataDir: string, api: string, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'hosted', ...args, '--api', api], { env: { ...process.env, POSTINO_DATA: dataDir } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

test('a poison message ends failed after maxAttempts with an event, the next one is delivered meanwhile, and the CLI lists, retries and deletes it', { timeout: 90_000 }, async () => {
  const dataDir = tempDir('poison');
  const { config, ports } = await upConfig(() => ({ engine: { concurrency: 1, maxAttempts: 3, crashRetrySeconds: [0.5] } }));
  const { poison, normal } = await seed(dataDir);
  const up = await startUp(dataDir, config);
  const api = `http://127.0.0.1:${ports.http}`;
  const key = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
  const events = async (): Promise<PostinoEvent[]> => {
    const text = await (await fetch(`${api}/api/events?limit=1000`, { headers: { authorization: `Bearer ${key}` } })).text();
    return text.trim() ? text.trim().split('\n').map((l) => JSON.parse(l) as PostinoEvent) : [];
  };
  try {
    const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 1, 20_000);
    assert.equal(sink[0]!.rcptTo[0], 'ada@example.com');
    await until(async () => (await events()).some((e) => e.type === 'failed'), 'the failed event', 20_000);
    const evs = await events();
    const failed = evs.filter((e) => e.type === 'failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.queueId, poison);
    assert.equal(failed[0]!.recipient, 'poison@example.com');
    assert.match(failed[0]!.reason!, /gave up after 3 attempts .*body of .* is missing/);
    // The sender hears of it: a DSN through the delivery queue, from <>, though the original is unreadable.
    const dsn = (await waitForSink(path.join(dataDir, 'sink'), (m) => m.some((x) => x.mailFrom === ''), 20_000)).find((x) => x.mailFrom === '');
    assert.ok(dsn, 'a DSN for the poison message');
    assert.deepEqual(dsn.rcptTo, ['shop@example.org']);
    const dsnText = fs.readFileSync(path.join(dataDir, 'sink', `${dsn.id}.eml`), 'utf8');
    assert.match(dsnText, /^Final-Recipient: rfc822; poison@example\.com\r\nAction: failed\r\nStatus: 5\.0\.0\r$/m);
    assert.match(dsnText, /^Diagnostic-Code: x-postino; gave up after 3 attempts/m);
    assert.match(dsnText, /^X-Postino-Note: the original message could not be read/m);
    const accepted = evs.find((e) => e.type === 'accepted' && e.recipient === 'ada@example.com')!;
    assert.ok(accepted.seq < failed[0]!.seq, 'the message behind the poison one did not wait for its attempts');
    assert.ok(normal);

    let r = await cli(dataDir, api, ['status']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /failed\.intake\s+1 \(postino hosted failed list\)/);
    assert.match(r.stdout, /failed\.delivery\s+0/);
    const metrics = await (await fetch(`${api}/metrics`, { headers: { authorization: `Bearer ${key}` } })).text();
    assert.match(metrics, /postino_failed_messages\{queue="intake"\} 1/);

    r = await cli(dataDir, api, ['failed', 'list']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${poison}  intake  failed .*attempts 3  account default  from <shop@example.org>  to poison@example.com`));
    assert.match(r.stdout, /body of .* is missing/);

    r = await cli(dataDir, api, ['failed', 'retry', poison]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /back in the intake queue/);
    await until(async () => (await events()).filter((e) => e.type === 'failed').length === 2, 'failed again after 3 more attempts', 20_000);

    r = await cli(dataDir, api, ['failed', 'delete', poison]);
    assert.equal(r.status, 0, r.stderr);
    r = await cli(dataDir, api, ['failed', 'list']);
    assert.equal(r.stdout, 'no failed messages\n');
    r = await cli(dataDir, api, ['failed', 'delete', poison]);
    assert.equal(r.status, 1, 'deleting what is not there fails');
    assert.match(r.stderr, /404/);
  } finally {
    await up.stop();
  }
});
