/*
 * Statistics and webhooks of an installation, not of a node (issue #14): two
 * hosted processes on one PostgreSQL (the test's own cluster), an account
 * sending 30 messages through node A and 20 through node B.
 *
 * Statistics: GET /api/stats and the CSV through either node count all 50,
 * each once, with nothing double counted by the two nodes folding the same feed.
 *
 * Webhooks from the shared outbox (engine/events/webhook-outbox-postgres.ts):
 * each node posts the events it shipped. The receiver refuses batches of node
 * A's events; node B's arrive meanwhile. Node A is SIGKILLed with its batch
 * pending and NOT restarted: nobody posts A's events before its lease runs
 * out; then node B takes A's outbox over and posts every one of A's events
 * (the pending batch under its webhook-id). Node A started again gets its
 * outbox back (B hands it over) and posts its new events itself. In the end
 * every event of the account arrived in exactly one webhook-id (a retried or
 * re-sent id carries the same body). events.webhooks.takeoverSeconds is 10
 * here (default 30, measured at 29 s after the SIGKILL) to keep the file short.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type { PostinoEvent } from '../../common/events.js';
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

interface Call {
  id: string;
  body: string;
  status: number;
}

/** A webhook receiver that answers 500 to a batch while `refuse` says so, else 200. */
function receiver(refuse: (events: Array<PostinoEvent & { node?: string }>) => boolean): Promise<{ url: string; calls: Call[]; close(): void }> {
  const calls: Call[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const events = (JSON.parse(body) as { data: { events: Array<PostinoEvent & { node?: string }> } }).data.events;
      const status = refuse(events) ? 500 : 200;
      calls.push({ id: String(req.headers['webhook-id']), body, status });
      res.writeHead(status).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`, calls, close: () => server.close() })));
}

const eventsOf = (c: Call): Array<PostinoEvent & { node?: string }> => (JSON.parse(c.body) as { data: { events: Array<PostinoEvent & { node?: string }> } }).data.events;

interface StatsAnswer {
  rows: Array<{ key: string; accepted: number; delivered: number }>;
  total: { accepted: number; delivered: number };
}

test('stats through node B include node A\'s mail, each message once; a SIGKILLed node\'s webhook events are posted by node B, once, and A takes its outbox back', { timeout: 150_000, skip: pgFile.skip }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const admin = openPool({ url, poolSize: 1, connectTimeoutSeconds: 5, queryTimeoutSeconds: 30 });
  await migrate(admin);
  await admin.end();
  const root = tempDir('multi-node-stats');
  const { sink, sinkDir } = await startTestSink(root);
  let aNode = '';
  let refuseA = true;
  const hook = await receiver((events) => refuseA && events.some((e) => e.node === aNode));
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const accounts = [
    { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
    { id: 'shop', networks: ['127.0.0.2/32'], listener: { requireTls: false }, webhooks: [{ id: 'crm', url: hook.url, secret }] },
  ];
  const nodes: Array<{ dir: string; config: Record<string, unknown>; listener: number; http: number; proc: Running }> = [];
  try {
    for (const name of ['a', 'b']) {
      const dir = path.join(root, name);
      fs.mkdirSync(dir, { recursive: true });
      const h = await hostedConfig(sink.port, { accounts, storage: { postgres: { url } }, events: { webhooks: { retrySeconds: [0.5], batchSize: 20, takeoverSeconds: 10 } } });
      nodes.push({ dir, config: h.config, listener: h.listenerPort, http: (h.config.http as { port: number }).port, proc: await startHostedProcess(dir, h.config) });
    }
    const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const stats = async (n: typeof a, query: string): Promise<Response> => {
      const key = fs.readFileSync(path.join(n.dir, 'secrets', 'api-key'), 'utf8').trim();
      return fetch(`http://127.0.0.1:${n.http}${query}`, { headers: { authorization: `Bearer ${key}` } });
    };
    const total = async (n: typeof a): Promise<StatsAnswer['total']> => ((await (await stats(n, '/api/stats?groupBy=account&account=shop')).json()) as StatsAnswer).total;

    // The receiver refuses node A's events from the start.
    aNode = (JSON.parse(a.proc.lines.find((l) => l.includes('"event":"event-feed"'))!) as { node: string }).node;
    assert.ok(aNode);
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

    // Webhooks: node B posts its own events while the receiver refuses node A's.
    const feed = async (): Promise<Array<PostinoEvent & { node: string }>> =>
      (await (await stats(b, '/api/events?account=shop&limit=100000')).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent & { node: string });
    const acked = (): Set<number> => new Set(hook.calls.filter((c) => c.status === 200).flatMap((c) => eventsOf(c).map((e) => e.seq)));
    const all = await feed();
    const fromB = all.filter((e) => e.node !== aNode);
    assert.equal(all.length - fromB.length > 0 && fromB.length > 0, true, 'events of both nodes in the feed');
    await until(() => fromB.every((e) => acked().has(e.seq)), "node B's events posted while node A's are refused", 30_000);
    await until(() => hook.calls.some((c) => c.status === 500), 'a refused batch of node A', 30_000);
    const pendingA = hook.calls.filter((c) => c.status === 500).at(-1)!.id;
    a.proc.kill9();
    await a.proc.exited;
    const killedAt = Date.now();
    refuseA = false;
    await sleep(3_000);
    assert.ok(!hook.calls.some((c) => c.status === 200 && eventsOf(c).some((e) => e.node === aNode)), "nobody posts node A's events before its lease runs out");
    // Node A stays dead: node B takes its outbox over (lease 10 s, renewed every 1.7 s).
    await until(() => all.every((e) => acked().has(e.seq)), "node B posting every event of dead node A", 45_000);
    const takeoverS = (Date.now() - killedAt) / 1000;
    console.log(`webhook takeover: node A's events all posted by node B ${takeoverS.toFixed(1)} s after SIGKILL`);
    assert.ok(b.proc.lines.some((l) => l.includes('"event":"webhook-takeover"')), 'node B logged the takeover');
    assert.ok(hook.calls.some((c) => c.id === pendingA && c.status === 200), "A's pending batch re-sent under its webhook-id");

    // Node A back: B hands the outbox over; A's new events are posted by A.
    a.proc = await startHostedProcess(a.dir, a.config);
    await until(() => b.proc.lines.some((l) => l.includes('"event":"webhook-handback"')), 'node B handing the outbox back', 30_000);
    await sendMany(a.listener, 5, 'after-a');
    await until(() => readSink(sinkDir).length >= 55, '55 delivered', 30_000);
    let latest: Awaited<ReturnType<typeof feed>> = [];
    await until(
      async () => {
        await sleep(300);
        latest = await feed();
        return latest.some((e) => e.node === aNode && e.type === 'delivered' && e.recipient?.startsWith('after-a')) && latest.every((e) => acked().has(e.seq));
      },
      "node A's new events posted",
      30_000,
    );
    const aKey = fs.readFileSync(path.join(a.dir, 'secrets', 'api-key'), 'utf8').trim();
    const aPosted = new Set(((await (await fetch(`http://127.0.0.1:${a.http}/api/webhooks/crm/deliveries?account=shop`, { headers: { authorization: `Bearer ${aKey}` } })).json()) as { deliveries: Array<{ webhookId: string; ok: boolean }> }).deliveries.filter((d) => d.ok).map((d) => d.webhookId));
    const newCalls = hook.calls.filter((c) => c.status === 200 && eventsOf(c).some((e) => e.recipient?.startsWith('after-a')));
    assert.ok(newCalls.length > 0 && newCalls.every((c) => aPosted.has(c.id)), "node A's new events posted by node A");
    all.splice(0, all.length, ...latest);
    const byId = new Map<string, string>();
    for (const c of hook.calls) {
      assert.ok(!byId.has(c.id) || byId.get(c.id) === c.body, `a retried webhook-id ${c.id} carries the same batch`);
      byId.set(c.id, c.body);
    }
    const perEvent = new Map<number, number>();
    for (const body of byId.values()) for (const e of (JSON.parse(body) as { data: { events: PostinoEvent[] } }).data.events) perEvent.set(e.seq, (perEvent.get(e.seq) ?? 0) + 1);
    for (const e of all) assert.equal(perEvent.get(e.seq), 1, `event ${e.seq} (${e.type}) in exactly one webhook-id`);
  } finally {
    for (const n of nodes) await n.proc.stop();
    hook.close();
    await sink.close();
  }
});
