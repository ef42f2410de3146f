/*
 * npm run bench -- events
 *   1. the event log with its indexes (history, statistics deltas): write rate
 *      for BENCH_EVENTS events (default 1,000,000) spread over 30 days, then
 *      the feed read over HTTP in one streamed response (events/s, peak RSS:
 *      bounded memory means RSS does not grow with the count), the CSV the same;
 *   2. statistics: the first query (it folds the deltas) and then queries over
 *      30 days, grouped by day, hour, tag and domain;
 *   3. the cost of webhooks on end-to-end throughput: `postino hosted` with a
 *      capture sink, BENCH_EVENTS_MESSAGES messages (default 2,000) over 8 SMTP
 *      sessions, timed until every copy is delivered, without and with a
 *      webhook endpoint that takes every event (a local receiver answering 200).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { Registry } from 'prom-client';
import { parseConfig } from '../common/config.js';
import type { EventInput, PostinoEvent } from '../common/events.js';
import { listenHttp } from '../common/http-server.js';
import { createLogger } from '../common/log.js';
import { Store } from '../common/store.js';
import { DeliveryPause } from '../engine/delivery/delivery-pause.js';
import { EventLog } from '../engine/events/event-log.js';
import { indexEvents, startEventReaders } from '../engine/events/events-stage.js';
import { createHostedApi } from '../engine/http-api.js';
import { startTestSink } from '../test/helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../test/helpers/hosted.js';
import { tempDir } from '../test/helpers/postino.js';
import { RawSmtp } from '../test/helpers/smtp-raw.js';
import { fmt, rssSampler } from './stats.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const MESSAGES = Number(process.env.BENCH_EVENTS_MESSAGES ?? 2_000);
const SESSIONS = 8;
const DAY = 86_400_000;
const KEY = 'bench-node-key-0123456789abcdef0123456789';

async function feedAndStats(): Promise<void> {
  const dir = tempDir('bench-events');
  const log = createLogger('bench', 'silent');
  const store = await Store.open(dir);
  const events = await EventLog.open(store);
  const indexes = indexEvents(store, events);
  const config = parseConfig({ accounts: [{ id: 'shop' }, { id: 'crm' }], events: { brake: { enabled: false } } });
  const api = createHostedApi(async (t) => (t === KEY ? { kind: 'node' } : undefined), log);
  const readers = await startEventReaders({ store, events, indexes, config: config.events, accounts: config.accounts, env: {}, api, killSwitch: await DeliveryPause.open(store), registry: new Registry(), log });
  const base = `http://127.0.0.1:${await listenHttp(api, { host: '127.0.0.1', port: 0, what: 'bench', log })}`;
  try {
    const start = Date.now() - 30 * DAY;
    const BATCH = 1_000;
    let t = Date.now();
    for (let i = 0; i < EVENTS; i += BATCH) {
      const batch: EventInput[] = [];
      for (let j = i; j < Math.min(EVENTS, i + BATCH); j++) {
        batch.push({
          type: j % 3 === 0 ? 'accepted' : j % 3 === 1 ? 'delivered' : j % 31 === 0 ? 'complained' : 'opened',
          at: new Date(start + Math.floor((j / EVENTS) * 30 * DAY)).toISOString(),
          account: j % 2 ? 'shop' : 'crm',
          queueId: `Q${Math.floor(j / 3)}`,
          messageId: `<m${Math.floor(j / 6)}@shop.example>`,
          recipient: `r${j % 50_000}@d${j % 40}.example`,
          sender: `news${j % 5}@shop.example`,
          tag: `campaign-${j % 25}`,
          stream: j % 4 ? 'transactional' : 'bulk',
          metadata: { customer: `c-${j % 1000}` },
        });
      }
      await events.append(batch);
    }
    const writeS = (Date.now() - t) / 1000;
    console.log(`write (events + history index + stats deltas, batches of ${BATCH}): ${fmt(EVENTS / writeS, 0)} events/s (${fmt(writeS)} s for ${EVENTS.toLocaleString('en-US')})`);

    t = Date.now();
    await indexes.stats.fold();
    console.log(`statistics fold of every delta: ${fmt((Date.now() - t) / 1000, 2)} s`);
    const to = Date.now();
    for (const g of ['day', 'hour', 'tag', 'domain', 'sender']) {
      t = performance.now();
      const r = await fetch(`${base}/api/stats?groupBy=${g}&from=${new Date(to - 30 * DAY).toISOString()}&to=${new Date(to).toISOString()}`, { headers: { authorization: `Bearer ${KEY}` } });
      const body = (await r.json()) as { rows: unknown[] };
      console.log(`stats over 30 days, groupBy=${g}: ${fmt(performance.now() - t, 1)} ms (${body.rows.length} rows)`);
    }

    for (const route of ['/api/events', '/api/events.csv']) {
      const before = Math.round(process.memoryUsage.rss() / 1024 / 1024);
      const rss = rssSampler();
      t = Date.now();
      const r = await fetch(`${base}${route}?limit=${EVENTS}`, { headers: { authorization: `Bearer ${KEY}` } });
      let bytes = 0;
      let lines = 0;
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.length;
        for (const c of chunk) if (c === 10) lines++;
      }
      const s = (Date.now() - t) / 1000;
      console.log(`${route} of ${EVENTS.toLocaleString('en-US')} events in one streamed response: ${fmt(EVENTS / s, 0)} events/s, ${fmt(bytes / 1024 / 1024)} MiB, ${lines} lines, peak RSS ${rss.stop()} MiB (${before} MiB before: bounded memory shows as a peak that does not grow with the count)`);
    }
    const rss = rssSampler();
    t = Date.now();
    let after = 0;
    let n = 0;
    for (;;) {
      const r = await fetch(`${base}/api/events?after=${after}&limit=10000`, { headers: { authorization: `Bearer ${KEY}` } });
      const text = await r.text();
      if (!text) break;
      const lastLine = text.slice(text.lastIndexOf('\n', text.length - 2) + 1);
      after = (JSON.parse(lastLine) as PostinoEvent).seq;
      n += text.split('\n').length - 1;
    }
    console.log(`/api/events in pages of 10,000: ${fmt(n / ((Date.now() - t) / 1000), 0)} events/s, peak RSS ${rss.stop()} MiB`);
  } finally {
    await readers.close();
    await api.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function receiver(): Promise<{ url: string; events: () => number; close(): void }> {
  let count = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      count += (JSON.parse(body) as { data: { events: unknown[] } }).data.events.length;
      res.writeHead(200).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, events: () => count, close: () => server.close() })));
}

async function e2e(withWebhook: boolean): Promise<number> {
  const dataDir = tempDir('bench-wh');
  const { sink, sinkDir } = await startTestSink(dataDir);
  const rx = await receiver();
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const h = await hostedConfig(sink.port, {
    accounts: [{ id: 'default', networks: ['127.0.0.1/32'], listener: { requireTls: false }, webhooks: withWebhook ? [{ id: 'all', url: rx.url, secret }] : [] }],
  });
  const node = await startHostedProcess(dataDir, h.config);
  try {
    const t = Date.now();
    await Promise.all(
      Array.from({ length: SESSIONS }, async (_, s) => {
        const c = await RawSmtp.connect(h.listenerPort);
        await c.reply();
        await c.cmd('EHLO bench.test');
        for (let i = s; i < MESSAGES; i += SESSIONS) {
          await c.cmd('MAIL FROM:<shop@example.org>');
          await c.cmd(`RCPT TO:<r${i}@example.com>`);
          await c.cmd('DATA');
          const r = await c.cmd(`From: shop@example.org\r\nTo: r${i}@example.com\r\nSubject: bench ${i}\r\n\r\n${('x'.repeat(76) + '\r\n').repeat(20)}.`);
          if (!r.startsWith('250')) throw new Error(r);
        }
        c.close();
      }),
    );
    for (;;) {
      const n = fs.existsSync(sinkDir) ? fs.readdirSync(sinkDir).filter((f) => f.endsWith('.json')).length : 0;
      if (n >= MESSAGES) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const s = (Date.now() - t) / 1000;
    if (withWebhook) {
      const until = Date.now() + 60_000;
      while (rx.events() < 2 * MESSAGES && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      console.log(`  webhook receiver got ${rx.events()} events (${fmt((Date.now() - t) / 1000)} s after the first message)`);
    }
    return MESSAGES / s;
  } finally {
    await node.stop();
    rx.close();
    await sink.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function benchEvents(): Promise<void> {
  if (EVENTS > 0) await feedAndStats(); // BENCH_EVENTS=0: only the e2e part
  const off = await e2e(false);
  console.log(`e2e (listener → engine → sink, ${MESSAGES} messages, ${SESSIONS} sessions), webhooks off: ${fmt(off, 0)} msg/s`);
  const on = await e2e(true);
  console.log(`e2e, a webhook taking every event: ${fmt(on, 0)} msg/s; ratio on/off ${fmt(on / off, 2)}`);
}
