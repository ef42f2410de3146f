/*
 * Statistics of an installation, not of a node (issue #14): two hosted
 * processes on one PostgreSQL (the test's own cluster), an account sending
 * 30 messages through node A and 20 through node B. GET /api/stats and the
 * CSV through either node count all 50, each once, with nothing double
 * counted by the two nodes folding the same feed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { migrate } from '../../common/storage/postgres/migrations.js';
import { openPool } from '../../common/storage/postgres/pool.js';
import { until } from '../helpers/fake-clock.js';
import { sleep, startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { clusterForFile } from '../helpers/postgres.js';
import { tempDir, type Running } from '../helpers/postino.js';
import { readSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

const pgFile = clusterForFile();

async function sendMany(port: number, n: number, prefix: string): Promise<void> {
  const c = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.2');
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    for (let i = 0; i < n; i++) {
      assert.match(await c.cmd('MAIL FROM:<news@shop.example>'), /^250/);
      assert.match(await c.cmd(`RCPT TO:<${prefix}-${i}@example.com>`), /^250/);
      assert.match(await c.cmd('DATA'), /^354/);
      assert.match(await c.cmd(`From: news@shop.example\r\nTo: ${prefix}-${i}@example.com\r\nSubject: ${prefix} ${i}\r\n\r\nhello\r\n.`), /^250/);
    }
  } finally {
    c.close();
  }
}

interface StatsAnswer {
  rows: Array<{ key: string; accepted: number; delivered: number }>;
  total: { accepted: number; delivered: number };
}

test('stats read through node B include the mail node A sent, each message once', { timeout: 120_000, skip: pgFile.skip }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const admin = openPool({ url, poolSize: 1, connectTimeoutSeconds: 5, queryTimeoutSeconds: 30 });
  await migrate(admin);
  await admin.end();
  const root = tempDir('multi-node-stats');
  const { sink, sinkDir } = await startTestSink(root);
  const accounts = [
    { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
    { id: 'shop', networks: ['127.0.0.2/32'], listener: { requireTls: false } },
  ];
  const nodes: Array<{ dir: string; listener: number; http: number; proc: Running }> = [];
  try {
    for (const name of ['a', 'b']) {
      const dir = path.join(root, name);
      fs.mkdirSync(dir, { recursive: true });
      const h = await hostedConfig(sink.port, { accounts, storage: { postgres: { url } } });
      nodes.push({ dir, listener: h.listenerPort, http: (h.config.http as { port: number }).port, proc: await startHostedProcess(dir, h.config) });
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const stats = async (n: typeof a, query: string): Promise<Response> => {
      const key = fs.readFileSync(path.join(n.dir, 'secrets', 'api-key'), 'utf8').trim();
      return fetch(`http://127.0.0.1:${n.http}${query}`, { headers: { authorization: `Bearer ${key}` } });
    };
    const total = async (n: typeof a): Promise<StatsAnswer['total']> => ((await (await stats(n, '/api/stats?groupBy=account&account=shop')).json()) as StatsAnswer).total;

    await sendMany(a.listener, 30, 'via-a');
    await sendMany(b.listener, 20, 'via-b');
    await until(() => readSink(sinkDir).length >= 50, '50 delivered', 60_000);
    assert.equal(a.proc.lines.filter((l) => l.includes('"event":"accepted"')).length, 30, 'node A accepted its 30');
    await until(async () => (await total(b)).delivered === 50, 'node B counting all 50 deliveries', 30_000);
    await sleep(2_500); // both nodes fold each second: a second count of anything would show now
    assert.deepEqual(await total(b), await total(a));
    const t = await total(b);
    assert.deepEqual([t.accepted, t.delivered], [50, 50], 'each message once, through either node');
    const csv = await (await stats(b, '/api/stats.csv?groupBy=account')).text();
    assert.match(csv, /^account,accepted,scheduled,delivered,/);
    assert.match(csv, /\nshop,50,0,50,/);
  } finally {
    for (const n of nodes) await n.proc.stop();
    await sink.close();
  }
});
