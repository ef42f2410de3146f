/*
 * The dashboard's statistics and webhooks pages on a real hosted node
 * (`postino hosted`, delivering to a capture sink in this process), over plain
 * HTTP with a logged-in session (test/helpers/dashboard-client.ts):
 *
 *  - statistics: the SVG charts carry the numbers GET /api/stats has (today's
 *    accepted and delivered, this hour's), the rate charts draw the providers'
 *    lines, the top tags, senders and recipient domains list what was sent,
 *    and a table's CSV has the rows /api/stats.csv has for the same range;
 *  - webhooks: an endpoint with its filter and its last deliveries (status
 *    200, latency); "send test event" reaches the receiver this test started,
 *    signed (Standard Webhooks, checked here with node:crypto); an endpoint
 *    that kept failing is disabled, shown with why, and re-enabled from the
 *    page once its receiver answers again;
 *  - a form post without the CSRF token is 403 and sends or changes nothing;
 *  - account `other`'s session sees none of `default`'s statistics or webhooks
 *    (page and CSV), and naming `default` is 403.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { hashPassword } from '../../common/password-hash.js';
import { DashboardClient } from '../helpers/dashboard-client.js';
import { until } from '../helpers/feedback.js';
import { startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { newApiKey, tempDir, type Running } from '../helpers/postino.js';
import { open, send } from '../helpers/smtp-session.js';

interface Call {
  headers: http.IncomingHttpHeaders;
  body: string;
  status: number;
}

interface Receiver {
  url: string;
  calls: Call[];
  /** The status it answers with from now on. */
  answer: number;
  close(): void;
}

function receiver(answer: number): Promise<Receiver> {
  const r = { calls: [] as Call[], answer } as Receiver;
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      r.calls.push({ headers: req.headers, body, status: r.answer });
      res.writeHead(r.answer).end('x');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      r.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`;
      r.close = () => server.close();
      resolve(r);
    }),
  );
}

/** Standard Webhooks verification, written here from the spec (not the project's signer). */
function verify(secret: string, c: Call): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const want = createHmac('sha256', key).update(`${String(c.headers['webhook-id'])}.${String(c.headers['webhook-timestamp'])}.${c.body}`).digest();
  return String(c.headers['webhook-signature'] ?? '')
    .split(' ')
    .some((s) => {
      const [v, b64] = s.split(',');
      const got = Buffer.from(b64 ?? '', 'base64');
      return v === 'v1' && got.length === want.length && timingSafeEqual(got, want);
    });
}

const PASSWORD = 'default dashboard password';
const DAY_MS = 86_400_000;
let dataDir: string;
let node: Running;
let base: string;
let nodeKey: string;
let otherKey: string;
let listenerPort: number;
let closeSink: () => Promise<void>;
const secret = `whsec_${randomBytes(32).toString('base64')}`;
let hook: Receiver;
let flaky: Receiver;
let otherHook: Receiver;

before(async () => {
  dataDir = tempDir('dashboard-stats-webhooks');
  const { sink } = await startTestSink(dataDir);
  closeSink = () => sink.close();
  hook = await receiver(200);
  flaky = await receiver(500);
  otherHook = await receiver(200);
  const other = newApiKey('other');
  otherKey = other.token;
  const h = await hostedConfig(sink.port, {
    accounts: [
      {
        id: 'default',
        networks: ['127.0.0.1/32'],
        listener: { requireTls: false },
        dashboard: { passwordHash: await hashPassword(PASSWORD) },
        webhooks: [
          { id: 'crm', url: hook.url, secret, types: ['delivered'] },
          { id: 'flaky', url: flaky.url, secret },
        ],
      },
      { id: 'other', networks: ['127.0.0.9/32'], listener: { requireTls: false }, apiKeys: [other.entry], webhooks: [{ id: 'other-hook', url: otherHook.url, secret }] },
    ],
    // Retry fast and give up after about a second of failures, so `flaky` is disabled within the test.
    events: { webhooks: { retrySeconds: [0.3], disableAfterHours: 0.0003, batchWaitMs: 100 } },
  });
  listenerPort = h.listenerPort;
  base = `http://127.0.0.1:${(h.config.http as { port: number }).port}`;
  node = await startHostedProcess(dataDir, h.config);
  nodeKey = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
});

after(async () => {
  if (node) await node.stop();
  hook?.close();
  flaky?.close();
  otherHook?.close();
  await closeSink?.();
});

async function sendTagged(local: string, from: string, to: string, tag: string): Promise<void> {
  const c = await open(listenerPort, { local });
  const r = await send(c, from, [to], `From: ${from}\r\nTo: ${to}\r\nSubject: ${tag}\r\nX-Postino-Tag: ${tag}\r\n\r\nHello.`);
  c.close();
  assert.match(r, /^250 /);
}

const api = async <T>(route: string, key = nodeKey): Promise<T> => {
  const r = await fetch(base + route, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 200, route);
  return (await r.json()) as T;
};

interface StatsRow {
  key: string;
  accepted: number;
  delivered: number;
}

/** The value a chart draws for one series at one label (day, hour). */
function point(page: string, chart: string, series: string, label: string): number | undefined {
  const svg = new RegExp(`<svg class="chart" id="${chart}"[\\s\\S]*?</svg>`).exec(page)?.[0] ?? '';
  const g = new RegExp(`<g class="series s-${series}" data-series="${series}">[\\s\\S]*?</g>`).exec(svg)?.[0] ?? '';
  const v = new RegExp(`data-label="${label}" data-value="([0-9.e-]+)"`).exec(g)?.[1];
  return v === undefined ? undefined : Number(v);
}

/** One row of a page table by its key: metric → number. */
function tableRow(page: string, table: string, key: string): Record<string, number> | undefined {
  const t = new RegExp(`<table class="list numbers" id="${table}">[\\s\\S]*?</table>`).exec(page)?.[0] ?? '';
  const row = new RegExp(`<tr data-key="${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}">([\\s\\S]*?)</tr>`).exec(t)?.[1];
  if (!row) return undefined;
  return Object.fromEntries([...row.matchAll(/data-metric="(\w+)">(\d+)</g)].map((m) => [m[1]!, Number(m[2])]));
}

test('statistics: the charts and tables show what /api/stats counts, with the providers’ lines; a table’s CSV has the API’s rows', { timeout: 60_000 }, async () => {
  await sendTagged('127.0.0.1', 'shop@example.org', 'ada@x.test', 'welcome');
  await sendTagged('127.0.0.1', 'shop@example.org', 'bob@x.test', 'welcome');
  await sendTagged('127.0.0.1', 'shop@example.org', 'cy@y.test', 'invoice');
  await sendTagged('127.0.0.9', 'info@other.example', 'dan@other-customer.test', 'other-tag');
  const day = new Date().toISOString().slice(0, 10);
  // Delivered and folded into the counters (the API folds before it answers, as the page does).
  const today = await until('4 deliveries counted', async () => {
    const all = (await api<{ rows: StatsRow[] }>(`/api/stats?groupBy=day&from=${day}T00:00:00Z`)).rows.find((r) => r.key === day);
    return all && all.delivered >= 4 ? all : undefined;
  }, 30_000);
  assert.ok(today.accepted >= 4);

  const op = await DashboardClient.login(base, '', nodeKey);
  const page = await op.get('/statistics?account=default');
  assert.equal(page.status, 200);
  for (const id of ['chart-daily', 'chart-hourly', 'chart-complaint-rate', 'chart-bounce-rate']) assert.match(page.text, new RegExp(`<svg class="chart" id="${id}"`), id);
  const mine = (await api<{ rows: StatsRow[] }>(`/api/stats?groupBy=day&account=default&from=${day}T00:00:00Z`)).rows.find((r) => r.key === day)!;
  assert.equal(mine.accepted, 3);
  assert.equal(mine.delivered, 3);
  assert.equal(point(page.text, 'chart-daily', 'accepted', day), 3, "today's accepted point of default");
  assert.equal(point(page.text, 'chart-daily', 'delivered', day), 3);
  assert.equal(point(page.text, 'chart-daily', 'bounced', day), 0);
  const hour = new Date().toISOString().slice(0, 13);
  const hourApi = (await api<{ rows: StatsRow[] }>(`/api/stats?groupBy=hour&account=default&from=${hour}:00:00Z`)).rows.find((r) => r.key === hour)!;
  assert.equal(point(page.text, 'chart-hourly', 'accepted', `${hour}:00`), hourApi.accepted, "this hour's point");
  // 14 days of points, oldest first, today last.
  const days = [...(/<svg class="chart" id="chart-daily"[\s\S]*?<\/svg>/.exec(page.text)?.[0] ?? '').matchAll(/data-series="accepted">[\s\S]*?<\/g>/g)][0]?.[0].match(/data-label="([\d-]+)"/g);
  assert.equal(days?.length, 14);
  assert.equal(days?.at(-1), `data-label="${day}"`);
  // The providers' lines on the rate charts.
  for (const v of ['0.001', '0.003']) assert.match(page.text, new RegExp(`id="chart-complaint-rate"[\\s\\S]*?data-threshold="${v}"`), `complaint line ${v}`);
  for (const v of ['0.02', '0.05']) assert.match(page.text, new RegExp(`id="chart-bounce-rate"[\\s\\S]*?data-threshold="${v}"`), `bounce line ${v}`);
  assert.match(page.text, /id="complaint-rate" class="good">0\.0%/);
  // Top tags, senders, recipient domains of default only.
  assert.deepEqual(tableRow(page.text, 'table-tags', 'welcome'), { accepted: 2, delivered: 2, bounced: 0, complained: 0, opened: 0, clicked: 0 });
  assert.equal(tableRow(page.text, 'table-tags', 'invoice')?.accepted, 1);
  assert.equal(tableRow(page.text, 'table-tags', 'other-tag'), undefined, 'the operator picked default');
  assert.equal(tableRow(page.text, 'table-domains', 'x.test')?.delivered, 2);
  assert.equal(tableRow(page.text, 'table-domains', 'y.test')?.delivered, 1);
  assert.equal(tableRow(page.text, 'table-senders', 'shop@example.org')?.accepted, 3);
  assert.ok(page.text.indexOf('data-key="welcome"') < page.text.indexOf('data-key="invoice"'), 'ranked by accepted');
  // All accounts together: other's tag too.
  assert.equal(tableRow((await op.get('/statistics')).text, 'table-tags', 'other-tag')?.accepted, 1);

  // The CSV of a table: the rows /api/stats.csv has for the same 14 days (ranked, so compared as sets).
  const from = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - 13 * DAY_MS).toISOString();
  for (const table of ['tags', 'domains', 'senders'] as const) {
    const csv = await op.get(`/statistics/${table}.csv?account=default`);
    assert.equal(csv.status, 200);
    assert.match(csv.headers.get('content-type') ?? '', /text\/csv/);
    assert.match(csv.headers.get('content-disposition') ?? '', new RegExp(`statistics-${table}-default\\.csv`));
    const groupBy = { tags: 'tag', domains: 'domain', senders: 'sender' }[table];
    const apiCsv = await (await fetch(`${base}/api/stats.csv?groupBy=${groupBy}&account=default&from=${from}`, { headers: { authorization: `Bearer ${nodeKey}` } })).text();
    const lines = (t: string): string[] => t.split('\r\n').filter(Boolean);
    assert.equal(lines(csv.text)[0], lines(apiCsv)[0], `${table}: the same header`);
    assert.deepEqual(lines(csv.text).slice(1).sort(), lines(apiCsv).slice(1).sort(), `${table}: the same rows`);
  }
  const tags = (await op.get('/statistics/tags.csv?account=default')).text.split('\r\n');
  assert.match(tags[0]!, /^tag,accepted,scheduled,delivered,/);
  assert.match(tags[1]!, /^welcome,2,0,2,/, 'largest first');
  const daily = (await op.get('/statistics/daily.csv?account=default')).text.split('\r\n').filter(Boolean);
  assert.equal(daily.length, 15, 'a header and 14 days, quiet ones as zeros');
  assert.match(daily[14]!, new RegExp(`^${day},3,0,3,`));
  assert.equal((await op.get('/statistics/nothing.csv')).status, 404);
  // A figure for the note (not asserted: the machine is shared): the page's time, as a browser waits for it.
  const ms: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = process.hrtime.bigint();
    assert.equal((await op.get('/statistics')).status, 200);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  console.log(`# statistics page over HTTP: p50 ${ms[9]!.toFixed(1)} ms, p95 ${ms[18]!.toFixed(1)} ms (20 requests)`);
  assert.equal((await op.get('/statistics?account=nobody')).status, 400);
});

test('webhooks: an endpoint with its filter and last deliveries; send test event reaches the receiver, signed', { timeout: 60_000 }, async () => {
  await until('the crm endpoint got a delivered batch', async () => hook.calls.some((c) => c.body.includes('"postino.events"')), 30_000);
  const op = await DashboardClient.login(base, '', nodeKey);
  await until('the page lists a 200 delivery of crm', async () => /data-kind="events" data-status="200" data-ok="true"/.test(card((await op.get('/webhooks?account=default')).text, 'crm')), 10_000);
  const page = (await op.get('/webhooks?account=default')).text;
  const crm = card(page, 'crm');
  assert.match(crm, new RegExp(`<td class="url">${hook.url.replace(/[.]/g, '\\.')}</td>`));
  assert.match(crm, /<td class="types">delivered<\/td>/, 'its filter');
  assert.match(crm, /<td class="state"><span class="good">enabled<\/span>/);
  assert.match(crm, /<td>\d+ ms<\/td>/, 'latency');
  assert.match(card(page, 'flaky'), /<td class="types">all types<\/td>/);
  assert.doesNotMatch(page, /other-hook/, 'the operator picked default');
  assert.doesNotMatch(page, /whsec_/, 'no secret on the page');

  // Without the CSRF token: 403, nothing sent.
  const before = hook.calls.length;
  assert.equal((await op.post('/webhooks/test', { account: 'default', id: 'crm' }, false)).status, 403);
  assert.equal((await op.post('/webhooks/test', { account: 'default', id: 'crm', _csrf: 'forged' }, false)).status, 403);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(hook.calls.filter((c) => c.body.includes('postino.test')).length, 0, 'no test event without the token');

  const sent = await op.post('/webhooks/test', { account: 'default', id: 'crm' });
  assert.equal(sent.status, 303);
  assert.match(sent.location ?? '', /done=tested&webhook=crm/);
  const t = hook.calls.slice(before).find((c) => c.body.includes('"postino.test"'));
  assert.ok(t, 'the receiver got the test event');
  assert.match(String(t.headers['webhook-signature']), /^v1,/, 'signature header present');
  assert.ok(t.headers['webhook-id'] && t.headers['webhook-timestamp']);
  assert.ok(verify(secret, t), 'and it verifies with the endpoint secret');
  assert.deepEqual((JSON.parse(t.body) as { data: unknown }).data, { account: 'default', webhook: 'crm' });
  const after = (await op.get(sent.location!)).text;
  assert.match(after, /id="test-result">Test event to crm: HTTP 200 in \d+ ms/);
  assert.match(card(after, 'crm'), /data-kind="test" data-status="200" data-ok="true"/, 'listed among the deliveries');
  const recorded = await api<{ deliveries: Array<{ kind: string; status: number; ms: number }> }>('/api/webhooks/crm/deliveries?account=default');
  assert.equal(recorded.deliveries[0]?.kind, 'test');
  assert.equal(recorded.deliveries[0]?.status, 200);
});

test('webhooks: a failing endpoint is disabled with its reason and re-enabled from the page', { timeout: 60_000 }, async () => {
  const op = await DashboardClient.login(base, '', nodeKey);
  await until('flaky disabled', async () => /<strong class="bad">disabled<\/strong>/.test(card((await op.get('/webhooks?account=default')).text, 'flaky')), 30_000);
  const page = (await op.get('/webhooks?account=default')).text;
  const f = card(page, 'flaky');
  assert.match(f, /failing since .*HTTP 500/, 'why');
  assert.match(f, /data-kind="events" data-status="500" data-ok="false"/, 'the failed deliveries with their status');
  assert.match(f, /action="\/webhooks\/enable"/, 'a re-enable button');
  assert.doesNotMatch(card(page, 'crm'), /action="\/webhooks\/enable"/, 'none on an enabled endpoint');

  flaky.answer = 200;
  assert.equal((await op.post('/webhooks/enable', { account: 'default', id: 'flaky' }, false)).status, 403, 'no token: 403');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!flaky.calls.some((c) => c.status === 200), 'still disabled: nothing sent');
  const done = await op.post('/webhooks/enable', { account: 'default', id: 'flaky' });
  assert.equal(done.status, 303);
  await until('the waiting batch delivered', async () => flaky.calls.some((c) => c.status === 200 && c.body.includes('"postino.events"')), 10_000);
  const again = await until('flaky shown enabled with a 200', async () => {
    const c = card((await op.get('/webhooks?account=default')).text, 'flaky');
    return /<span class="good">enabled<\/span>/.test(c) && /data-kind="events" data-status="200"/.test(c) ? c : undefined;
  }, 10_000);
  assert.doesNotMatch(again, /action="\/webhooks\/enable"/);
  const listed = await api<{ webhooks: Array<{ id: string; disabled: unknown }> }>('/api/webhooks?account=default');
  assert.equal(listed.webhooks.find((w) => w.id === 'flaky')?.disabled, null);
});

test("account other's session sees none of default's statistics or webhooks, and cannot act on them", { timeout: 30_000 }, async () => {
  const other = await DashboardClient.login(base, '', otherKey);
  const traces = /welcome|invoice|x\.test|y\.test|shop@example\.org|crm|flaky/;
  const stats = await other.get('/statistics');
  assert.equal(stats.status, 200);
  assert.equal(tableRow(stats.text, 'table-tags', 'other-tag')?.accepted, 1, 'its own figures are there');
  assert.doesNotMatch(stats.text, traces);
  assert.doesNotMatch(stats.text, /id="stats-account"/, 'no account picker');
  for (const t of ['daily', 'hourly', 'tags', 'senders', 'domains']) {
    const csv = await other.get(`/statistics/${t}.csv`);
    assert.equal(csv.status, 200, t);
    assert.doesNotMatch(csv.text, traces, `${t}.csv`);
  }
  assert.match((await other.get('/statistics/tags.csv')).text, /\r\nother-tag,1,/);
  assert.equal(point(stats.text, 'chart-daily', 'accepted', new Date().toISOString().slice(0, 10)), 1, 'its own count, not the node’s');
  const hooks = await other.get('/webhooks');
  assert.equal(hooks.status, 200);
  assert.match(hooks.text, /data-webhook="other-hook"/);
  assert.doesNotMatch(hooks.text, traces);
  for (const route of ['/statistics?account=default', '/statistics/tags.csv?account=default', '/webhooks?account=default']) assert.equal((await other.get(route)).status, 403, route);
  const calls = hook.calls.length;
  assert.equal((await other.post('/webhooks/test', { account: 'default', id: 'crm' })).status, 403);
  assert.equal((await other.post('/webhooks/test', { id: 'crm' })).status, 404, "another account's endpoint is not found");
  assert.equal((await other.post('/webhooks/enable', { id: 'flaky' })).status, 404);
  assert.equal(hook.calls.length, calls, 'nothing sent to default’s receiver');
  // And default's password session sees none of other's.
  const mine = await DashboardClient.login(base, 'default', PASSWORD);
  const own = await mine.get('/webhooks');
  assert.match(own.text, /data-webhook="crm"/);
  assert.doesNotMatch(own.text, /other-hook/);
  assert.doesNotMatch((await mine.get('/statistics')).text, /other-tag|other-customer/);
  assert.doesNotMatch((await mine.get('/statistics/domains.csv')).text, /other-customer/);
});

/** One endpoint's card on the webhooks page. */
function card(page: string, id: string): string {
  return new RegExp(`<section class="card webhook" data-webhook="${id}"[\\s\\S]*?</section>`).exec(page)?.[0] ?? '';
}
