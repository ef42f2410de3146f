/*
 * Two real hosted nodes (`postino hosted`, the built CLI) sharing one
 * PostgreSQL (storage.postgres; the cluster is this test's own), each with its
 * own LevelDB queue, in front of one capture sink:
 *   - a node on a database `postino db migrate` has not prepared refuses to start, naming the command;
 *   - an address suppressed through node A's API is not delivered through node B;
 *   - PostgreSQL stopped: node B still accepts (250) and sends nothing; when
 *     PostgreSQL returns, the other recipient arrives and the suppressed one never does;
 *   - a message the forwarder retries through node B after node A took it (same
 *     X-Postino-Spool-Id) is answered `250 … (already queued)` by B and arrives once;
 *   - a quota of 5 messages an hour holds across both nodes (the 6th gets 452 4.5.3).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { PostinoEvent } from '../../common/events.js';
import { until } from '../helpers/fake-clock.js';
import { startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { clusterForFile } from '../helpers/postgres.js';
import { CLI, tempDir, type Running } from '../helpers/postino.js';
import { readSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

const pgFile = clusterForFile();
const skip = pgFile.skip;

/** One message; resolves with the final reply, or the first refusal on the way. */
async function attempt(port: number, rcpts: string[], testId: string, extraHeader = ''): Promise<string> {
  const c = await RawSmtp.connect(port, '127.0.0.1');
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    const mail = await c.cmd('MAIL FROM:<shop@example.org>');
    if (!mail.startsWith('250')) return mail;
    for (const r of rcpts) assert.match(await c.cmd(`RCPT TO:<${r}>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    return await c.cmd(`From: shop@example.org\r\nTo: customers@example.org\r\nSubject: hi\r\nX-Test-Id: ${testId}\r\n${extraHeader}\r\nhello\r\n.`);
  } finally {
    c.close();
  }
}

async function send(port: number, rcpts: string[], testId: string): Promise<void> {
  assert.match(await attempt(port, rcpts, testId), /^250/);
}

test('two hosted nodes on one PostgreSQL: suppressed through A, not delivered through B, not even while PostgreSQL is down; one spool id and one quota for both', { skip, timeout: 240_000 }, async (t) => {
  const hourAtStart = Math.floor(Date.now() / 3_600_000);
  const url = await pgFile.cluster().newDatabase();
  const root = tempDir('shared-sup');
  const { sink, sinkDir } = await startTestSink(root);
  const storage = { postgres: { url, connectTimeoutSeconds: 2, queryTimeoutSeconds: 5 } };
  const accounts = [{ id: 'default', networks: ['127.0.0.1/32'], listener: { requireTls: false, messagesPerHour: 5 } }];
  const nodes: Running[] = [];
  try {
    // Not migrated yet: the node says what to run and does not start.
    const a = await hostedConfig(sink.port, { storage, accounts });
    const aDir = path.join(root, 'a');
    fs.mkdirSync(aDir);
    await assert.rejects(startHostedProcess(aDir, a.config), /schema at version 0, this postino needs \d+: run `postino db migrate/);

    const cfgFile = path.join(root, 'migrate.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ storage }));
    const m = spawnSync(process.execPath, [CLI, 'db', 'migrate', '--config', cfgFile], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(m.status, 0, m.stdout + m.stderr);

    const b = await hostedConfig(sink.port, { storage, accounts });
    const bDir = path.join(root, 'b');
    fs.mkdirSync(bDir);
    nodes.push(await startHostedProcess(aDir, a.config), await startHostedProcess(bDir, b.config));
    const apiOf = (cfg: Record<string, unknown>, dir: string) => {
      const base = `http://127.0.0.1:${(cfg.http as { port: number }).port}`;
      const key = fs.readFileSync(path.join(dir, 'secrets', 'api-key'), 'utf8').trim();
      return (route: string, init: RequestInit = {}) => fetch(base + route, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.body ? { 'content-type': 'application/json' } : {}) } });
    };
    const apiA = apiOf(a.config, aDir);
    const apiB = apiOf(b.config, bDir);

    // Suppressed through node A's API…
    const added = await apiA('/api/suppressions', { method: 'POST', body: JSON.stringify({ account: 'default', address: 'gone@example.com', reason: 'manual' }) });
    assert.equal(added.status, 201, await added.clone().text());
    // …listed by node B…
    const listed = (await (await apiB('/api/suppressions?account=default')).json()) as { suppressions: Array<{ address: string }> };
    assert.deepEqual(listed.suppressions.map((s) => s.address), ['gone@example.com']);
    // …and not delivered through node B.
    await send(b.listenerPort, ['ok@example.com', 'gone@example.com'], 'via-b');
    await until(() => readSink(sinkDir).some((x) => x.testId === 'via-b'), 'the other recipient delivered through B', 30_000);
    const feedB = async (): Promise<PostinoEvent[]> => ((await (await apiB('/api/events?limit=1000')).text()).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent));
    await until(async () => (await feedB()).some((e) => e.type === 'suppressed' && e.recipient === 'gone@example.com'), 'a suppressed event on B', 15_000);
    assert.deepEqual(readSink(sinkDir).filter((x) => x.testId === 'via-b').flatMap((x) => x.rcptTo), ['ok@example.com']);

    // PostgreSQL down: node B accepts (its own queue) and sends nothing it could not check.
    await pgFile.cluster().stop();
    await send(b.listenerPort, ['later@example.com', 'gone@example.com'], 'while-down');
    const removal = await apiA('/api/suppressions?account=default&address=gone@example.com', { method: 'DELETE' });
    assert.equal(removal.status, 503, 'the API says the shared list is unavailable, not that nothing was there');
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(readSink(sinkDir).filter((x) => x.testId === 'while-down').length, 0, 'nothing sent unchecked');
    await pgFile.cluster().start();
    await until(() => readSink(sinkDir).some((x) => x.testId === 'while-down'), 'the message delivered once PostgreSQL is back', 60_000);
    await until(async () => (await feedB()).filter((e) => e.type === 'suppressed' && e.recipient === 'gone@example.com').length === 2, 'the second suppressed event on B', 15_000);
    assert.deepEqual(readSink(sinkDir).filter((x) => x.testId === 'while-down').flatMap((x) => x.rcptTo), ['later@example.com']);

    // The forwarder's retry through the other node after a lost reply: same spool id, not queued twice (nor counted twice).
    const spool = 'Z0Z0Z0Z0Z0Z0ABCDEF12';
    const first = await attempt(a.listenerPort, ['once@example.com'], 'spool', `X-Postino-Spool-Id: ${spool}\r\n`);
    const queueId = /^250 2\.0\.0 Ok: queued as (\S+)$/.exec(first)?.[1];
    assert.ok(queueId, first);
    const retry = await attempt(b.listenerPort, ['once@example.com'], 'spool', `X-Postino-Spool-Id: ${spool}\r\n`);
    assert.equal(retry, `250 2.0.0 Ok: queued as ${queueId} (already queued)`, 'node B names node A\'s queue id');
    await until(() => readSink(sinkDir).some((x) => x.testId === 'spool'), 'the message delivered', 30_000);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(readSink(sinkDir).filter((x) => x.testId === 'spool').length, 1, 'one copy');

    // The quota (5 an hour) counts both nodes: 2 through B (one while PostgreSQL was down), 1 through A, one more each, then A refuses.
    await send(a.listenerPort, ['q1@example.com'], 'quota-1');
    await send(b.listenerPort, ['q2@example.com'], 'quota-2');
    const fifth = await attempt(a.listenerPort, ['q3@example.com'], 'quota-3');
    // Quotas are calendar hours: a run that crossed one started counting again.
    if (Math.floor(Date.now() / 3_600_000) !== hourAtStart) t.diagnostic(`the UTC hour changed during the test; quota reply not judged: ${fifth}`);
    else assert.match(fifth, /^452 4\.5\.3 Hourly quota of 5 messages reached for account default/);
  } finally {
    if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
    await Promise.all(nodes.map((n) => n.stop()));
    await sink.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
