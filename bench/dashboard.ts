/*
 * npm run bench -- dashboard: the dashboard's pages over an event log of
 * 1,000,000 events (500,000 messages: accepted + delivered, recipients spread
 * over 1,000 domains) and a delivery queue of 10,000 copies, served by the real
 * hosted HTTP app (createHostedApi + registerDashboard) and timed as server time
 * (fastify inject: no sockets), 50 requests each after 5 unmeasured ones.
 *
 * Pages: the overview (a scan of the delivery queue, the reputation brake's figures from the
 * statistics), the statistics page (14 days and today), a search by part of a recipient
 * that matches 1 in 1,000 events (50 matches ≈ 50,000 events read), a search
 * for a recipient that is not there (reads the per-request budget, 50,000 events,
 * and offers "continue"), a search by a whole address (through the recipient index:
 * 2 events read, newest and oldest first, and one with no match), the feed's `recipient=` filter
 * (GET /api/events, also through the index), and a message's page opened from a search result
 * (with its `after` hint); then the one-time recipient-index backfill over the whole log.
 */
import path from 'node:path';
import fs from 'node:fs';
import { ApiKeys } from '../common/api-keys.js';
import { parseConfig } from '../common/config.js';
import { DurableQueue } from '../common/durable-queue.js';
import type { EventInput } from '../common/events.js';
import type { IntakeMeta } from '../common/intake-record.js';
import { createLogger } from '../common/log.js';
import { Store } from '../common/store.js';
import { createDelivery } from '../engine/delivery/delivery.js';
import type { DeliveryMeta } from '../engine/delivery/delivery-record.js';
import { registerDashboard } from '../engine/dashboard/dashboard.js';
import { MemorySessionStore } from '../engine/dashboard/sessions.js';
import { EventLog } from '../engine/events/event-log.js';
import { registerEventRoutes } from '../engine/events/http-routes.js';
import { MessageHistoryIndex } from '../engine/events/message-history.js';
import { RecipientIndex } from '../engine/events/recipient-index.js';
import { ReputationBrake } from '../engine/events/reputation-brake.js';
import { Stats } from '../engine/events/stats.js';
import { createHostedApi } from '../engine/http-api.js';
import { LevelSuppressionList } from '../engine/suppression.js';
import { tempDir } from '../test/helpers/postino.js';
import { fmt, percentile } from './stats.js';

const MESSAGES = 500_000;
const BATCH = 10_000;
const QUEUED = 10_000;
const RUNS = 50;
const WARMUP = 5;
const KEY = 'bench-node-key-'.padEnd(43, 'x');

export async function benchDashboard(): Promise<void> {
  const dir = tempDir('bench-dashboard');
  const log = createLogger('bench', 'silent');
  const config = parseConfig({});
  const store = await Store.open(path.join(dir, 'hosted'));
  try {
    const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
    const queue = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
    const events = await EventLog.open(store);
    const recipients = new RecipientIndex(store, events); // as indexEvents does on a hosted node
    const stats = new Stats(store, events);
    events.addIndexer(stats.indexer);
    const suppression = new LevelSuppressionList(store);
    const delivery = await createDelivery({ config: config.delivery, accounts: config.accounts, hostname: 'bench.test', store, queue, events, suppression, visibilityMs: 600_000, log });

    const t0 = Date.now();
    const start = Date.parse('2026-11-01T00:00:00Z');
    for (let m = 0; m < MESSAGES; m += BATCH / 2) {
      const batch: EventInput[] = [];
      for (let i = m; i < m + BATCH / 2; i++) {
        const base = { account: 'default', queueId: `Q${i.toString(36).toUpperCase().padStart(8, '0')}`, messageId: `<m${i}@shop.example>`, recipient: `user${i}@domain${i % 1000}.example`, sender: 'shop@example.org', at: new Date(start + i * 1000).toISOString() };
        batch.push({ ...base, type: 'accepted' }, { ...base, type: 'delivered', smtp: { code: 250, enhanced: '2.0.0', response: '250 2.0.0 Ok' } });
      }
      await events.append(batch);
    }
    await recipients.backfill(); // nothing to do: every event was indexed as written
    await stats.fold();
    const filled = Date.now() - t0;
    for (let i = 0; i < QUEUED; i += 1000) {
      const ops = [];
      for (let j = i; j < i + 1000; j++) {
        const meta: DeliveryMeta = { envelope: { mailFrom: 'b@example.org', rcptTo: [`q${j}@domain${j % 50}.example`], clientAddress: '127.0.0.1', heloName: 'bench', receivedAt: Date.now(), tls: false }, pending: [`q${j}@domain${j % 50}.example`], intakeId: `i${j}`, account: 'default', recipient: `q${j}@domain${j % 50}.example`, sender: 'shop@example.org', stream: 'transactional' };
        const p = await queue.prepare({ meta, body: Buffer.from('Subject: x\r\n\r\nx\r\n') });
        ops.push(...p.ops);
      }
      await store.commit(ops, { sync: false });
      queue.added(1000);
    }
    console.log(`event log: ${(MESSAGES * 2).toLocaleString('en')} events written in ${fmt(filled / 1000)} s; delivery queue ${queue.size.toLocaleString('en')} copies`);

    const app = createHostedApi(KEY, log);
    const apiKeys = new ApiKeys(KEY, config.accounts);
    const brake = new ReputationBrake({ store, events, stats, killSwitch: delivery.killSwitch, config: config.events.brake, log });
    registerDashboard(app, { config: config.dashboard, secureCookies: false, accounts: config.accounts, apiKeys, events, intake, deliveryQueue: queue, delivery, suppressions: { store, suppression }, capture: undefined, sessions: new MemorySessionStore(3_600_000), stats, brake }, log);
    registerEventRoutes(app, { events, history: new MessageHistoryIndex(store, events) });
    await app.ready();
    const form = await app.inject({ method: 'GET', url: '/login' });
    const loginCookie = String(form.headers['set-cookie']).split(';')[0]!;
    const token = /name="_login" value="([^"]+)"/.exec(form.body)![1]!;
    const login = await app.inject({ method: 'POST', url: '/login', headers: { cookie: loginCookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ _login: token, secret: KEY }).toString() });
    const cookie = ([] as string[]).concat(login.headers['set-cookie'] ?? []).find((c) => c.startsWith('postino_session='))!.split(';')[0]!;

    const time = async (name: string, url: string, check: (body: string) => boolean, headers: Record<string, string> = { cookie }): Promise<void> => {
      const ms: number[] = [];
      for (let i = 0; i < WARMUP + RUNS; i++) {
        const t = process.hrtime.bigint();
        const r = await app.inject({ method: 'GET', url, headers });
        const d = Number(process.hrtime.bigint() - t) / 1e6;
        if (r.statusCode !== 200 || !check(r.body)) throw new Error(`${name}: ${r.statusCode} ${r.body.slice(0, 300)}`);
        if (i >= WARMUP) ms.push(d);
      }
      ms.sort((a, b) => a - b);
      console.log(`${name.padEnd(44)} p50 ${fmt(percentile(ms, 50)).padStart(7)} ms   p95 ${fmt(percentile(ms, 95)).padStart(7)} ms   max ${fmt(ms[ms.length - 1]!).padStart(7)} ms`);
    };
    const rows = (b: string): number => (b.match(/data-seq="/g) ?? []).length;
    await time('overview (10,000 queued copies, brake)', '/', (b) => b.includes('id="queue-total">10000<') && b.includes('data-brake="default"'));
    await time('statistics (14 days, today by hour)', '/statistics', (b) => b.includes('<svg'));
    await time('search recipient, 1 in 1,000 events match', '/messages?recipient=%40domain7.example', (b) => rows(b) === 50);
    await time('search recipient, no match (scan budget)', '/messages?recipient=%40nowhere.example', (b) => rows(b) === 0 && b.includes('Continue searching'));
    const someone = `user${MESSAGES / 4 + 7}%40domain${(MESSAGES / 4 + 7) % 1000}.example`;
    await time('search full address (index), newest first', `/messages?recipient=${someone}`, (b) => rows(b) === 2 && !b.includes('Continue searching'));
    await time('search full address (index), oldest first', `/messages?recipient=${someone}&after=0`, (b) => rows(b) === 2 && !b.includes('Continue searching'));
    await time('search full address (index), no match', '/messages?recipient=nobody%40nowhere.example', (b) => rows(b) === 0 && !b.includes('Continue searching'));
    const bearer = { authorization: `Bearer ${KEY}` };
    const lines = (b: string): number => b.split('\n').filter(Boolean).length;
    await time('GET /api/events?recipient= (index), 2 events', `/api/events?recipient=${someone}&limit=1000`, (b) => lines(b) === 2, bearer);
    await time('GET /api/events?recipient= (index), no match', '/api/events?recipient=nobody%40nowhere.example&limit=1000', (b) => lines(b) === 0, bearer);
    const mid = MESSAGES / 2;
    await time('message page (after hint)', `/messages/Q${mid.toString(36).toUpperCase().padStart(8, '0')}?after=${mid * 2}`, (b) => b.includes('id="timeline"'));
    await app.close();
    // The one-time backfill of a node upgraded with this log: the cursor gone, every event indexed again.
    await store.commit([{ type: 'del', key: 'mr-backfill!cursor' }], { sync: true });
    const b0 = Date.now();
    const n = await new RecipientIndex(store, events).backfill();
    const bs = (Date.now() - b0) / 1000;
    console.log(`recipient index backfill: ${n.toLocaleString('en')} events in ${fmt(bs)} s (${Math.round(n / bs).toLocaleString('en')} events/s)`);
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
