/*
 * The DataExporter over real HTTP on a real LevelDB: 10,000 messages' worth of
 * mixed outcomes written concurrently through EventLog (as the rewrap,
 * delivery and feedback writers do, some batches failing), then the feed read
 * in pages of 500 (exactly once, in seq order, a reader cut off mid-response
 * resuming, the node restarted between two pages), the CSV parsed back by
 * Python's csv module, the statistics checked against counts made here from
 * the feed, the message history, the filters, bad input, and an account key's
 * view of every route.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { ApiKeys, newAccountKey } from '../../../common/api-keys.js';
import { parseConfig, type Config } from '../../../common/config.js';
import type { EventInput, PostinoEvent } from '../../../common/events.js';
import { listenHttp } from '../../../common/http-server.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { DeliveryPause } from '../../../engine/delivery/delivery-pause.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { indexEvents, startEventReaders, type EventReaders } from '../../../engine/events/events-stage.js';
import { createHostedApi } from '../../../engine/http-api.js';
import { tempDir } from '../../helpers/postino.js';

const NODE_KEY = 'node-key-for-the-exporter-test-0123456789';
const MESSAGES = 10_000;
const log = createLogger('test', 'silent');

interface Node {
  base: string;
  store: Store;
  events: EventLog;
  readers: EventReaders;
  api: FastifyInstance;
  close(): Promise<void>;
}

async function startNode(dir: string, config: Config): Promise<Node> {
  const store = await Store.open(dir);
  const events = await EventLog.open(store);
  const indexes = indexEvents(store, events);
  const keys = new ApiKeys(NODE_KEY, config.accounts);
  const api = createHostedApi((t) => keys.principal(t), log);
  const killSwitch = await DeliveryPause.open(store);
  const readers = await startEventReaders({ store, events, indexes, config: config.events, accounts: config.accounts, env: {}, api, killSwitch, registry: new Registry(), log });
  const port = await listenHttp(api, { host: '127.0.0.1', port: 0, what: 'test', log });
  return {
    base: `http://127.0.0.1:${port}`,
    store,
    events,
    readers,
    api,
    async close() {
      await readers.close();
      await api.close();
      await store.close();
    },
  };
}

/** What the writers of one message write, batch by batch. */
function messageBatches(i: number): EventInput[][] {
  const account = Math.floor(i / 2) % 2 ? 'shop' : 'crm';
  const base: Omit<EventInput, 'type'> = {
    account,
    queueId: `Q${i}`,
    intakeId: `I${Math.floor(i / 2)}`,
    messageId: `<m${Math.floor(i / 2)}@${account}.example>`,
    recipient: `r${i}@d${i % 5}.example`,
    sender: `s${i % 3}@${account}.example`,
    tag: `t${i % 7}`,
    stream: i % 4 === 0 ? 'bulk' : 'transactional',
    metadata: i % 3 === 0 ? { customer: `c${i % 11}`, 'odd,key': `v "q"\nline ${i}` } : { customer: `c${i % 11}` },
  };
  const ok = { code: 250, enhanced: '2.0.0', response: '250 2.0.0 Ok: queued as X' };
  const accepted: EventInput[] = [{ ...base, type: 'accepted' }];
  const delivered: EventInput = { ...base, type: 'delivered', smtp: ok };
  switch (i % 10) {
    case 5:
      return [accepted, [{ ...base, type: 'deferred', smtp: { code: 451, enhanced: '4.7.1', response: '451 4.7.1 Try again, "later"' }, reason: 'greylisted' }], [delivered]];
    case 6:
      return [accepted, [{ ...base, type: 'bounced', bounce: { class: 'hard', status: '5.1.1', source: 'smtp' }, smtp: { code: 550, enhanced: '5.1.1', response: '550 5.1.1 No such user' } }]];
    case 7:
      return [accepted, [{ ...base, type: 'bounced', bounce: { class: i % 20 === 7 ? 'soft' : 'block', status: '4.2.2', source: 'dsn' }, report: { id: `R${i}`, format: 'dsn', reportingMta: 'mx.example' } }]];
    case 8:
      return [accepted, [delivered], [{ ...base, type: 'complained', report: { id: `C${i}`, format: 'arf', feedbackType: 'abuse' } }]];
    case 9:
      return [
        accepted,
        [delivered],
        [{ ...base, type: 'opened', first: true, machine: true, userAgent: 'apple-mpp' }],
        [{ ...base, type: 'opened', first: false, machine: false, userAgent: 'mail-client' }],
        [{ ...base, type: 'clicked', url: 'https://shop.example/a?b=1,2', machine: false, first: true, userAgent: 'browser' }],
        [{ ...base, type: 'clicked', url: 'https://shop.example/b', machine: false, first: false, userAgent: 'browser' }],
        [{ ...base, type: 'clicked', url: 'https://shop.example/a', machine: true, userAgent: 'scanner' }],
        [{ ...base, type: 'unsubscribed', via: 'one-click', list: '' }],
      ];
    default:
      return [accepted, [delivered]];
  }
}

/** Writes every message's batches, many in flight at once; every 97th batch fails (its seqs become gaps). */
async function writeAll(events: EventLog, store: Store): Promise<PostinoEvent[]> {
  const written: PostinoEvent[] = [];
  const queues = Array.from({ length: MESSAGES }, (_, i) => messageBatches(i));
  let n = 0;
  const CONCURRENCY = 64;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < queues.length) {
      const q = queues[next++]!;
      for (const b of q) {
        const fail = ++n % 97 === 0;
        try {
          const got = await events.commitWith(b, async (ops) => {
            if (fail) throw new Error('disk full (test)');
            await store.commit(ops, { sync: false });
          });
          written.push(...got!);
        } catch (e) {
          assert.match(String(e), /disk full/);
          const got = await events.commitWith(b, (ops) => store.commit(ops, { sync: false })); // the writer's retry
          written.push(...got!);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return written.sort((a, b) => a.seq - b.seq);
}

function parseNdjson(text: string): PostinoEvent[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as PostinoEvent);
}

const get = (base: string, route: string, key = NODE_KEY): Promise<Response> => fetch(base + route, { headers: { authorization: `Bearer ${key}` } });

async function page(base: string, after: number, limit: number, extra = '', key = NODE_KEY): Promise<PostinoEvent[]> {
  const r = await get(base, `/api/events?after=${after}&limit=${limit}${extra}`, key);
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return parseNdjson(text);
}

/** The test's own flattening of an event to CSV cells (independent of events-csv.ts). */
function flatten(e: PostinoEvent): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, v: unknown): void => {
    if (v === undefined || v === null) return;
    if (typeof v === 'object' && k !== 'figures') for (const [k2, v2] of Object.entries(v)) put(`${k}.${k2}`, v2);
    else out[k] = typeof v === 'object' ? JSON.stringify(v) : String(v);
  };
  for (const [k, v] of Object.entries(e)) put(k, v);
  return out;
}

/** The test's own statistics from the feed: metric counts per group. */
function countFromFeed(events: PostinoEvent[], group: (e: PostinoEvent) => string | undefined): Map<string, Record<string, number>> {
  const m = new Map<string, Record<string, number>>();
  const inc = (g: string, metric: string): void => {
    const r = m.get(g) ?? {};
    r[metric] = (r[metric] ?? 0) + 1;
    m.set(g, r);
  };
  for (const e of events) {
    const g = group(e);
    if (g === undefined) continue;
    if (e.type === 'opened') inc(g, e.machine ? 'machineOpened' : 'opened');
    else if (e.type === 'clicked') inc(g, e.machine ? 'machineClicked' : 'clicked');
    else inc(g, e.type);
    if (e.type === 'bounced') inc(g, `${e.bounce!.class}Bounced`);
    if (e.type === 'opened' && !e.machine && e.first) inc(g, 'uniqueOpened');
    if (e.type === 'clicked' && !e.machine && e.first) inc(g, 'uniqueClicked');
  }
  return m;
}

function assertStats(rows: Array<Record<string, number | string>>, expected: Map<string, Record<string, number>>, what: string): void {
  assert.deepEqual(
    rows.map((r) => r.key).sort(),
    [...expected.keys()].sort(),
    `${what}: groups`,
  );
  for (const r of rows) {
    const want = expected.get(r.key as string)!;
    for (const [metric, n] of Object.entries(r)) if (metric !== 'key') assert.equal(n, want[metric] ?? 0, `${what}: ${r.key} ${metric}`);
  }
}

test('the feed, its CSV, statistics and message history for 10,000 messages of mixed outcomes', { timeout: 240_000 }, async () => {
  const shopKey = await newAccountKey();
  const crmKey = await newAccountKey();
  // The brake off: 10% complaints would pause both accounts, and its `paused` events are not what this test counts.
  const config = parseConfig({ accounts: [{ id: 'shop', apiKeys: [shopKey.entry] }, { id: 'crm', apiKeys: [crmKey.entry] }], events: { brake: { enabled: false } } });
  const dir = tempDir('exporter');
  let node = await startNode(dir, config);
  try {
    const written = await writeAll(node.events, node.store);
    const total = written.length;
    assert.ok(total > 25_000, `${total} events`);

    // Pages of 500 from after=0, the node restarted between two pages: every event once, in order.
    const seen: PostinoEvent[] = [];
    let after = 0;
    let pages = 0;
    for (;;) {
      const p = await page(node.base, after, 500);
      if (!p.length) break;
      assert.ok(p.length <= 500);
      seen.push(...p);
      after = p.at(-1)!.seq;
      if (++pages === 20) {
        await node.close();
        node = await startNode(dir, config);
      }
    }
    assert.deepEqual(
      seen.map((e) => e.seq),
      written.map((e) => e.seq),
      'every committed event exactly once, in seq order, across a restart',
    );
    assert.deepEqual(seen[1234], written[1234]);

    // A reader cut off in the middle of a response resumes from the last whole line it got.
    const cut = await get(node.base, '/api/events?after=0&limit=100000');
    const reader = cut.body!.getReader();
    let partial = '';
    while (partial.length < 300_000) partial += Buffer.from((await reader.read()).value!).toString('utf8');
    await reader.cancel();
    const whole = parseNdjson(partial.slice(0, partial.lastIndexOf('\n') + 1));
    const rest = await page(node.base, whole.at(-1)!.seq, 1_000_000);
    assert.deepEqual([...whole, ...rest].map((e) => e.seq), written.map((e) => e.seq), 'resumed from the last seq seen: nothing missed or repeated');

    // Filters.
    const pick = async (q: string): Promise<PostinoEvent[]> => page(node.base, 0, 1_000_000, q);
    assert.deepEqual((await pick('&type=complained,unsubscribed')).map((e) => e.seq), written.filter((e) => e.type === 'complained' || e.type === 'unsubscribed').map((e) => e.seq));
    assert.deepEqual((await pick('&tag=t3&account=crm')).map((e) => e.seq), written.filter((e) => e.tag === 't3' && e.account === 'crm').map((e) => e.seq));
    assert.deepEqual((await pick('&recipient=R42@D2.example')).map((e) => e.seq), written.filter((e) => e.recipient === 'r42@d2.example').map((e) => e.seq));
    assert.deepEqual((await pick(`&messageId=${encodeURIComponent('m21@crm.example')}`)).map((e) => e.seq), written.filter((e) => e.messageId === '<m21@crm.example>').map((e) => e.seq));
    const mid = written[Math.floor(total / 2)]!.at;
    assert.deepEqual((await pick(`&from=${encodeURIComponent(mid)}`)).map((e) => e.seq), written.filter((e) => e.at >= mid).map((e) => e.seq));
    assert.deepEqual((await pick(`&to=${encodeURIComponent(mid)}&type=delivered`)).map((e) => e.seq), written.filter((e) => e.at < mid && e.type === 'delivered').map((e) => e.seq));
    for (const bad of ['after=-1', 'limit=x', 'from=yesterday', 'type=DROP%20TABLE', 'from=2026-02-01&to=2026-01-01']) {
      const r = await get(node.base, `/api/events?${bad}`);
      assert.equal(r.status, 400, bad);
      assert.match(((await r.json()) as { error: string }).error ?? '', /\S/, bad);
    }

    // CSV, parsed back by Python's csv module, equals the NDJSON.
    const csvRes = await get(node.base, '/api/events.csv?limit=1000000');
    assert.equal(csvRes.status, 200);
    assert.match(csvRes.headers.get('content-type') ?? '', /^text\/csv/);
    const csvFile = path.join(dir, 'events.csv');
    fs.writeFileSync(csvFile, Buffer.from(await csvRes.arrayBuffer()));
    // Python writes what it parsed to a file (a pipe of tens of MB is slow on a busy machine).
    const parsed = path.join(dir, 'events.json');
    const py = spawnSync('python3', ['-c', 'import csv,json,sys\nwith open(sys.argv[1], newline="") as f, open(sys.argv[2], "w") as o:\n  json.dump(list(csv.reader(f)), o, separators=(",", ":"))', csvFile, parsed], { encoding: 'utf8' });
    assert.equal(py.status, 0, py.stderr);
    const [columns, ...lists] = JSON.parse(fs.readFileSync(parsed, 'utf8')) as string[][];
    const rows = lists.map((l) => Object.fromEntries(columns!.map((c, i) => [c, l[i]])));
    assert.equal(rows.length, total);
    assert.ok(lists.every((l) => l.length === columns!.length), 'every record has every column');
    assert.ok(columns!.includes('metadata.customer') && columns!.includes('metadata.odd,key') && columns!.includes('smtp.response'), columns!.join(' '));
    rows.forEach((row, i) => {
      const want = flatten(written[i]!);
      for (const c of columns!) if (c !== 'other' && c !== 'metadata.other') assert.equal(row[c], want[c] ?? '', `row ${i} column ${c}`);
      for (const k of Object.keys(want)) assert.ok(columns!.includes(k), `column ${k} present`);
    });

    // Statistics equal counts made here from the feed.
    const stats = async (q: string, key = NODE_KEY): Promise<Array<Record<string, number | string>>> => {
      const r = await get(node.base, `/api/stats?${q}`, key);
      const text = await r.text();
      assert.equal(r.status, 200, text);
      return (JSON.parse(text) as { rows: Array<Record<string, number | string>> }).rows;
    };
    const day = (e: PostinoEvent): string => e.at.slice(0, 10);
    assertStats(await stats('groupBy=day'), countFromFeed(seen, day), 'by day');
    assertStats(await stats('groupBy=hour'), countFromFeed(seen, (e) => e.at.slice(0, 13)), 'by hour');
    assertStats(await stats('groupBy=tag&account=shop'), countFromFeed(seen, (e) => (e.account === 'shop' ? e.tag : undefined)), 'shop by tag');
    assertStats(await stats('groupBy=sender'), countFromFeed(seen, (e) => e.sender), 'by sender');
    assertStats(await stats('groupBy=domain'), countFromFeed(seen, (e) => e.recipient!.split('@')[1]), 'by domain');
    assertStats(await stats('groupBy=stream&account=crm'), countFromFeed(seen, (e) => (e.account === 'crm' ? e.stream : undefined)), 'crm by stream');
    assertStats(await stats('groupBy=account'), countFromFeed(seen, (e) => e.account), 'by account');
    assertStats(await stats('groupBy=hour&stream=bulk'), countFromFeed(seen, (e) => (e.stream === 'bulk' ? e.at.slice(0, 13) : undefined)), 'bulk by hour');
    assertStats(await stats('groupBy=account&stream=transactional'), countFromFeed(seen, (e) => (e.stream === 'transactional' ? e.account : undefined)), 'transactional by account');
    for (const bad of ['groupBy=tag&stream=bulk', 'stream=newsletter']) assert.equal((await get(node.base, `/api/stats?${bad}`)).status, 400, bad);
    assertStats(await stats('groupBy=day', shopKey.token), countFromFeed(seen, (e) => (e.account === 'shop' ? day(e) : undefined)), 'shop key by day');
    const statsCsv = await (await get(node.base, '/api/stats.csv?groupBy=tag')).text();
    assert.match(statsCsv.split('\r\n')[0]!, /^tag,accepted,scheduled,delivered,/);
    assert.equal(statsCsv.trim().split('\r\n').length, 1 + 7);
    assert.equal((await get(node.base, '/api/stats?groupBy=week')).status, 400);
    assert.equal((await stats('groupBy=day&from=2001-01-01&to=2001-01-02')).length, 0, 'a range without events has no rows');

    // Message history: by intake id (both copies), by Message-ID, by a copy's queue id.
    const hist = async (id: string, key = NODE_KEY): Promise<Response> => get(node.base, `/api/messages/${encodeURIComponent(id)}`, key);
    const byIntake = (await (await hist('I4')).json()) as { messages: Array<{ account: string; copies: Array<{ queueId: string; status: string; events: PostinoEvent[] }> }> };
    assert.equal(byIntake.messages.length, 1);
    assert.deepEqual(byIntake.messages[0]!.copies.map((c) => c.queueId).sort(), ['Q8', 'Q9']);
    const q9 = byIntake.messages[0]!.copies.find((c) => c.queueId === 'Q9')!;
    assert.deepEqual(q9.events.map((e) => e.type), ['accepted', 'delivered', 'opened', 'opened', 'clicked', 'clicked', 'clicked', 'unsubscribed']);
    const q8 = byIntake.messages[0]!.copies.find((c) => c.queueId === 'Q8')!;
    assert.deepEqual(q8.events.map((e) => e.type), ['accepted', 'delivered', 'complained']);
    assert.equal(q8.status, 'complained');
    const byMid = (await (await hist('<m2@crm.example>')).json()) as typeof byIntake;
    assert.deepEqual(byMid.messages[0]!.copies.map((c) => c.queueId).sort(), ['Q4', 'Q5']);
    const deferred = byMid.messages[0]!.copies.find((c) => c.queueId === 'Q5')!;
    assert.deepEqual(deferred.events.map((e) => [e.type, e.smtp?.code]), [['accepted', undefined], ['deferred', 451], ['delivered', 250]]);
    const byCopy = (await (await hist('Q5')).json()) as typeof byIntake;
    assert.deepEqual(byCopy, byMid, 'a copy id finds the whole message');
    assert.equal((await hist('nope')).status, 404);

    // An account key: its own account only, on every route.
    const shopEvents = await page(node.base, 0, 1_000_000, '', shopKey.token);
    assert.equal(shopEvents.length, written.filter((e) => e.account === 'shop').length);
    assert.ok(shopEvents.every((e) => e.account === 'shop'));
    const shopCsv = await (await get(node.base, '/api/events.csv?limit=1000000', shopKey.token)).text();
    assert.ok(!shopCsv.includes('crm.example') && shopCsv.includes('shop.example'));
    for (const route of ['/api/events?account=crm', '/api/events.csv?account=crm', '/api/stats?account=crm', '/api/stats.csv?account=crm', '/api/messages/I4?account=crm', '/api/webhooks?account=crm']) {
      assert.equal((await get(node.base, route, shopKey.token)).status, 403, route);
    }
    assert.equal((await hist('<m2@crm.example>', shopKey.token)).status, 404, "another account's message is not found");
    assert.equal((await hist('I4', shopKey.token)).status, 404);
    assert.equal((await hist('I5', crmKey.token)).status, 404);
    assert.equal((await hist('I5', shopKey.token)).status, 200);
    assert.equal((await stats('groupBy=account', crmKey.token)).map((r) => r.key).join(), 'crm');
  } finally {
    await node.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
