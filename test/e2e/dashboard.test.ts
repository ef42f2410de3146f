/*
 * The dashboard on a real node (`postino up`, the capture sink as MTA cluster),
 * in headless Chromium (Debian's /usr/bin/chromium through playwright-core) and
 * over plain HTTP:
 *
 *  - the operator logs in with the node key, pauses delivery with the switch, sends
 *    a message (SMTP to the forwarder) and sees the queue count rise while the sink
 *    stays flat, resumes and sees it delivered and the queue drain, searches the
 *    message by recipient and opens its timeline, unsubscribes through the delivered
 *    copy's List-Unsubscribe link, finds the address on the suppressions page and
 *    removes it, opens the captured copy; screenshots of each page (desktop and
 *    360 px) under <tmp>/dashboard-screens/;
 *  - an HTML body with <script> shown on the message page does not run (no dialog,
 *    no request reaches the beacon server the script and an <img> point at);
 *  - a state change without the CSRF token is 403 and changes nothing;
 *  - account A's session sees nothing of account B's, on every page and export;
 *  - every page sends the CSP header (no inline script; the body route its own);
 *  - the statistics page's count of today's accepted and delivered messages rises with the
 *    message the browser flow sends; the webhooks page lists the default account's endpoint
 *    and its deliveries (both pages fit 360 px; dashboard-stats-webhooks.test.ts tests them in depth).
 * Without chromium the browser tests are skipped visibly (failed under POSTINO_REQUIRE_PEERS=1).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { PostinoEvent } from '../../common/events.js';
import { hashPassword } from '../../common/password-hash.js';
import { newAccountKey } from '../../common/api-keys.js';
import { DashboardClient } from '../helpers/dashboard-client.js';
import { until } from '../helpers/feedback.js';
import { startBrowserNode, type Chromium } from '../helpers/browser.js';
import { tempDir, upConfig, type Running, type UpPorts } from '../helpers/postino.js';
import { readSink, waitForSink } from '../helpers/sink-reader.js';
import { open, send } from '../helpers/smtp-session.js';

const SHOP_PASSWORD = 'shop dashboard password';

let up: Running;
let ports: UpPorts;
let dataDir: string;
let nodeKey: string;
let crmKey: string;
let base: string;
let browser: Browser | undefined;
/** The default account's webhook receiver (answers 200), so the webhooks page has an endpoint and deliveries. */
let hookServer: http.Server;
let hookCalls = 0;
/** Of those, test events (`postino.test`), which only the page's button sends. */
let hookTests = 0;
let skipBrowser: string | undefined;
let chrome: Chromium | undefined;

before(async () => {
  dataDir = tempDir('dashboard');
  hookServer = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      hookCalls++;
      if (body.includes('"postino.test"')) hookTests++;
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook`;
  const crm = await newAccountKey();
  crmKey = crm.token;
  const shopHash = await hashPassword(SHOP_PASSWORD);
  const c = await upConfig(() => ({
    accounts: [
      { id: 'default', networks: ['127.0.0.1/32', '::1/128'], webhooks: [{ id: 'orders-hook', url: hookUrl, secret: `whsec_${Buffer.alloc(32, 7).toString('base64')}`, types: ['delivered'] }] },
      { id: 'shop', networks: ['127.0.0.2/32'], listener: { requireTls: false }, dashboard: { passwordHash: shopHash } },
      { id: 'crm', networks: ['127.0.0.3/32'], listener: { requireTls: false }, apiKeys: [crm.entry] },
    ],
  }));
  ports = c.ports;
  base = `http://127.0.0.1:${ports.http}`;
  ({ up, nodeKey, chrome } = await startBrowserNode(dataDir, c.config, 'dashboard-screens'));
  browser = chrome.browser;
  skipBrowser = chrome.skip;
});

after(async () => {
  await chrome?.close();
  if (up) assert.equal(await up.stop(), 0);
  hookServer?.close();
});

/** Today's value of one series in the statistics page's 14-day chart (the last point). */
async function todayOnChart(page: Page, series: string): Promise<number> {
  const v = await page.getAttribute(`#chart-daily g[data-series="${series}"] circle:last-of-type`, 'data-value');
  assert.ok(v !== null, `a ${series} point for today`);
  return Number(v);
}

const sinkDir = (): string => path.join(dataDir, 'sink');

/** Through the forwarder (the default account), or straight to the listener from an account's address. */
async function sendMail(to: string, subject: string, o: { html?: string; local?: string } = {}): Promise<void> {
  const c = o.local ? await open(ports.listener, { local: o.local }) : await open(ports.forwarder);
  const from = o.local === '127.0.0.2' ? 'news@shop.example' : o.local === '127.0.0.3' ? 'info@crm.example' : 'shop@example.org';
  const head = `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nX-Test-Id: ${subject}\r\nX-Postino-Stream: bulk\r\n`;
  const body = o.html
    ? `${head}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nText part of ${subject}.\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${o.html}\r\n--b1--`
    : `${head}\r\nHello from ${subject}.`;
  const r = await send(c, from, [to], body);
  c.close();
  assert.match(r, /^250 /, `${subject} accepted`);
}

async function apiEvents(key: string, query = ''): Promise<PostinoEvent[]> {
  const r = await fetch(`${base}/api/events?limit=10000${query}`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 200);
  return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent);
}

function capturedId(e: PostinoEvent | undefined): string {
  const id = /captured as (\S+)/.exec(e?.smtp?.response ?? '')?.[1];
  assert.ok(id, `a delivered event naming its captured copy: ${JSON.stringify(e)}`);
  return id;
}

/** A logged-in HTTP client without a browser (test/helpers/dashboard-client.ts) on this node. */
const Client = { login: (account: string, secret: string): Promise<DashboardClient> => DashboardClient.login(base, account, secret) };

const shot = (page: Page, name: string): Promise<void> => chrome!.shot(page, name);

/** At 360 px nothing may stick out sideways (tables scroll inside their own box). */
async function fitsPhone(page: Page, name: string): Promise<void> {
  await page.setViewportSize({ width: 360, height: 740 });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `${name}: the page is ${width} px wide at 360 px`);
  await shot(page, `${name}-360px`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

test('the operator in a browser: switch, queue, search, timeline, unsubscribe, suppressions, captured copy', { timeout: 120_000 }, async (t) => {
  if (skipBrowser || !browser) return t.skip(skipBrowser);
  const t0 = Date.now();
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  try {
    await page.goto(`${base}/`);
    assert.match(page.url(), /\/login$/, 'no session: the login page');
    await shot(page, 'login');
    await page.fill('input[name=secret]', nodeKey);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
    assert.equal(await page.textContent('#queue-total'), '0');

    // Pause with a reason: the switch says who and why.
    await page.fill('tr[data-switch="*"] input[name=reason]', 'checking a complaint spike');
    await Promise.all([page.waitForURL(`${base}/`), page.click('tr[data-switch="*"] button')]);
    const sw = await page.textContent('tr[data-switch="*"]');
    assert.match(sw ?? '', /paused/);
    assert.match(sw ?? '', /operator \(dashboard\)/);
    assert.match(sw ?? '', /checking a complaint spike/);

    // The statistics before the message (default's account, as the message goes through the forwarder).
    await page.goto(`${base}/statistics?account=default`);
    const acceptedBefore = await todayOnChart(page, 'accepted');
    const deliveredBefore = await todayOnChart(page, 'delivered');
    await page.goto(`${base}/`);

    // A message while paused: the queue count rises, the sink stays flat.
    const sinkBefore = readSink(sinkDir()).length;
    await sendMail('ada@example.com', 'order-1001');
    await until('the queue count to show the copy', async () => {
      await page.reload();
      return (await page.textContent('#queue-total')) === '1';
    }, 20_000);
    await shot(page, 'overview-paused');
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(readSink(sinkDir()).length, sinkBefore, 'nothing delivered while paused');

    // Resume: delivered, the queue drains.
    await Promise.all([page.waitForURL(`${base}/`), page.click('tr[data-switch="*"] button')]);
    const delivered = await waitForSink(sinkDir(), (m) => m.some((x) => x.testId === 'order-1001'), 20_000);
    const copy = delivered.find((x) => x.testId === 'order-1001');
    assert.ok(copy, 'delivered after resume');
    await until('the queue to drain', async () => {
      await page.reload();
      return (await page.textContent('#queue-total')) === '0';
    }, 20_000);
    await shot(page, 'overview');
    await fitsPhone(page, 'overview');

    // The statistics page counts it: today's accepted and delivered points rise (folded about once a second).
    await until('the statistics to count the message', async () => {
      await page.goto(`${base}/statistics?account=default`);
      return (await todayOnChart(page, 'accepted')) > acceptedBefore && (await todayOnChart(page, 'delivered')) > deliveredBefore;
    }, 20_000);
    assert.equal(await page.locator('#chart-complaint-rate [data-threshold="0.003"]').count(), 1, 'the 0.3% line');
    assert.ok((await page.locator('#table-domains tr[data-key="example.com"]').count()) === 1, 'ada’s domain among the top recipient domains');
    await shot(page, 'statistics');
    await fitsPhone(page, 'statistics');

    // The webhooks page: the endpoint, its filter, its delivery of the message's events.
    await until('the webhook to deliver', async () => hookCalls > 0, 20_000);
    await until('the webhooks page to list the delivery', async () => {
      await page.goto(`${base}/webhooks`);
      return (await page.locator('[data-webhook="orders-hook"] tr[data-kind="events"][data-status="200"]').count()) > 0;
    }, 10_000);
    assert.equal(await page.textContent('[data-webhook="orders-hook"] td.types'), 'delivered');
    await shot(page, 'webhooks');
    await fitsPhone(page, 'webhooks');

    // Search by recipient, open the timeline.
    await page.goto(`${base}/messages`);
    await page.fill('input[name=recipient]', 'ada@example.com');
    await Promise.all([page.waitForURL(/recipient=ada/), page.click('form.search button')]);
    const types = await page.$$eval('#results td.type', (tds) => tds.map((td) => td.textContent));
    assert.ok(types.includes('accepted') && types.includes('delivered'), `search results: ${types.join(', ')}`);
    await shot(page, 'messages-search');
    await Promise.all([page.waitForURL(/\/messages\/[0-9A-Z]+/), page.click('#results a >> nth=0')]);
    const timeline = await page.$$eval('#timeline td.type', (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(timeline.slice(0, 1), ['accepted']);
    assert.ok(timeline.includes('delivered'), `timeline: ${timeline.join(', ')}`);
    assert.equal(await page.locator('#captured-copies a').count(), 1, 'the message page links its captured copy');
    await shot(page, 'message-timeline');
    await fitsPhone(page, 'message-timeline');

    // Unsubscribe through the delivered copy's List-Unsubscribe link (its web page, in the browser).
    const unsub = /List-Unsubscribe:[^\r\n]*<(http:\/\/[^>]+\/u\/[^>]+)>/i.exec(copy.headers.replace(/\r\n[ \t]+/g, ' '))?.[1];
    assert.ok(unsub, 'the delivered copy has an http List-Unsubscribe link');
    await page.goto(unsub);
    await page.click('button[type=submit]');
    await page.waitForLoadState();
    await page.goto(`${base}/suppressions?q=ada%40example.com`);
    const row = page.locator('#suppressions tr[data-address="ada@example.com"]');
    assert.equal(await row.count(), 1, 'the unsubscribed address is on the suppressions page');
    assert.match((await row.textContent()) ?? '', /unsubscribe/);
    await shot(page, 'suppressions');
    await fitsPhone(page, 'suppressions');
    await Promise.all([page.waitForURL(/\/suppressions\/remove/), row.locator('a.remove').click()]);
    await shot(page, 'suppression-remove-confirm');
    await Promise.all([page.waitForURL(/done=removed/), page.click('#confirm-remove button')]);
    assert.equal(await page.locator('#suppressions tr[data-address="ada@example.com"]').count(), 0, 'removed');
    const api = await fetch(`${base}/api/suppressions?account=default&address=ada@example.com`, { headers: { authorization: `Bearer ${nodeKey}` } });
    assert.deepEqual(((await api.json()) as { suppressions: unknown[] }).suppressions, [], 'gone from the list itself');

    // The captured copy, as the sink received it.
    await page.goto(`${base}/captured`);
    await shot(page, 'captured-list');
    await Promise.all([page.waitForURL(/\/captured\/[0-9A-Z]+$/), page.click('#captured-list a >> text=order-1001')]);
    assert.match((await page.textContent('.captured-copy')) ?? '', /Hello from order-1001/);
    const eml = await page.request.get(`${base}/captured/${copy.id}/raw.eml`);
    assert.equal(eml.status(), 200);
    assert.match(eml.headers()['content-type'] ?? '', /message\/rfc822/);
    assert.match(await eml.text(), /Subject: order-1001/);
    await shot(page, 'captured-copy');
    await fitsPhone(page, 'captured-copy');
    console.log(`# browser flow: ${Date.now() - t0} ms`);
  } finally {
    await ctx.close();
  }
});

test('an HTML body with <script> shown on the message page does not run: no dialog, no request', { timeout: 60_000 }, async (t) => {
  if (skipBrowser || !browser) return t.skip(skipBrowser);
  const hits: string[] = [];
  const beacon = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    res.end('x');
  });
  await new Promise<void>((r) => beacon.listen(0, '127.0.0.1', r));
  const b = `http://127.0.0.1:${(beacon.address() as AddressInfo).port}`;
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const dialogs: string[] = [];
  const finished: string[] = [];
  const failed: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  // A request the CSP stopped is reported as failed (net::ERR_BLOCKED_BY_CSP); one that left would finish.
  ctx.on('requestfinished', (r) => finished.push(r.url()));
  ctx.on('requestfailed', (r) => failed.push(`${r.url()} ${r.failure()?.errorText ?? ''}`));
  try {
    await sendMail('eve@example.com', 'hostile-1', { html: `<p>Hi <b>Eve</b></p><script>alert('xss');fetch('${b}/script')</script><img src="${b}/pixel.gif"><img src="x" onerror="alert('onerror')">` });
    const ev = await until('the hostile message delivered', async () => (await apiEvents(nodeKey, '&type=delivered')).find((e) => e.recipient === 'eve@example.com'), 20_000);
    await page.goto(`${base}/login`);
    await page.fill('input[name=secret]', nodeKey);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
    await page.goto(`${base}/messages/${ev.queueId}`);
    const frame = page.frameLocator('iframe.mail');
    assert.equal(await frame.locator('b').textContent(), 'Eve', 'the HTML body is rendered');
    assert.equal(await page.getAttribute('iframe.mail', 'sandbox'), '', 'sandboxed without allow-scripts');
    await new Promise((r) => setTimeout(r, 1_000));
    assert.deepEqual(dialogs, [], 'no dialog opened');
    assert.deepEqual(hits, [], 'the beacon server got no request');
    assert.deepEqual(finished.filter((u) => u.startsWith(b)), [], 'the browser made no request to the beacon');
    for (const f of failed.filter((u) => u.startsWith(b))) assert.match(f, / (csp|net::ERR_BLOCKED_BY_CSP)$/, `${f}: stopped by the body's CSP`);
    await shot(page, 'message-hostile-html');
  } finally {
    await ctx.close();
    beacon.close();
  }
});

test('a state change without the CSRF token is 403 and changes nothing', { timeout: 30_000 }, async () => {
  const op = await Client.login('', nodeKey);
  assert.equal((await op.post('/pause', { reason: 'forged' }, false)).status, 403);
  assert.equal((await op.post('/pause', { reason: 'forged', _csrf: 'wrong' }, false)).status, 403);
  assert.equal((await op.post('/suppressions/add', { account: 'default', address: 'csrf@example.com' }, false)).status, 403);
  assert.equal((await op.post('/suppressions/import', { account: 'default', csv: 'csrf2@example.com' }, false)).status, 403);
  assert.equal((await op.post('/webhooks/test', { account: 'default', id: 'orders-hook' }, false)).status, 403);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(hookTests, 0, 'no test event sent without the token');
  const q = (await (await fetch(`${base}/api/queue`, { headers: { authorization: `Bearer ${nodeKey}` } })).json()) as { delivery: { paused: { global: boolean } } };
  assert.equal(q.delivery.paused.global, false, 'not paused');
  const list = await op.get('/suppressions?q=csrf');
  assert.doesNotMatch(list.text, /csrf@example\.com|csrf2@example\.com/, 'nothing added');
  // No session at all: a post is 403 too, and a page redirects to the login.
  const anon = await fetch(`${base}/pause`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'reason=x' });
  assert.equal(anon.status, 403);
  assert.equal((await fetch(`${base}/messages`, { redirect: 'manual' })).status, 303);
  // With the token the same form works (the test above is not a form that never works).
  assert.equal((await op.post('/suppressions/add', { account: 'default', address: 'csrf-ok@example.com' })).status, 303);
  assert.match((await op.get('/suppressions?q=csrf-ok')).text, /csrf-ok@example\.com/);
  // Wrong credentials: no session.
  const form = await fetch(`${base}/login`);
  const token = /name="_login" value="([^"]+)"/.exec(await form.text())![1]!;
  const cookie = form.headers.getSetCookie().map((s) => s.split(';')[0]).join('; ');
  const bad = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ _login: token, account: 'shop', secret: 'wrong' }).toString() });
  assert.equal(bad.status, 401);
  assert.equal(bad.headers.getSetCookie().some((s) => s.startsWith('postino_session=')), false);
  const noToken = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ account: 'shop', secret: SHOP_PASSWORD }).toString() });
  assert.equal(noToken.status, 403, 'login without its form token');
});

test("account A's session sees nothing of account B's: pages, copies, exports, switch", { timeout: 60_000 }, async () => {
  await sendMail('alice@shop-customer.test', 'shop-msg', { local: '127.0.0.2' });
  await sendMail('bob@crm-customer.test', 'crm-msg', { local: '127.0.0.3' });
  const crmDelivered = await until('the crm message delivered', async () => (await apiEvents(crmKey, '&type=delivered')).find((e) => e.recipient === 'bob@crm-customer.test'), 20_000);
  const shopDelivered = await until('the shop message delivered', async () => (await apiEvents(nodeKey, '&type=delivered')).find((e) => e.recipient === 'alice@shop-customer.test'), 20_000);
  const crmCopy = capturedId(crmDelivered);
  const shopCopy = capturedId(shopDelivered);
  const crmSuppressed = await fetch(`${base}/api/suppressions`, { method: 'POST', headers: { authorization: `Bearer ${crmKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ address: 'crm-only@example.com' }) });
  assert.equal(crmSuppressed.status, 201);

  const shop = await Client.login('shop', SHOP_PASSWORD);
  const crm = await Client.login('', crmKey);
  const crmTraces = /crm|bob@crm-customer|crm-only@example\.com/;

  // The shop's own things are there (so "absent" below is not an empty page).
  const own = await shop.get('/messages');
  assert.match(own.text, /alice@shop-customer\.test/);
  assert.doesNotMatch(own.text, crmTraces);
  assert.equal((await shop.get(`/messages/${shopDelivered.queueId}`)).status, 200);
  assert.equal((await shop.get(`/captured/${shopCopy}`)).status, 200, 'its own captured copy opens');
  for (const route of ['/', '/messages', '/messages?recipient=bob', '/suppressions', '/suppressions?q=only', '/suppressions/export.csv', '/statistics', '/statistics/domains.csv', '/statistics/senders.csv', '/webhooks']) {
    const r = await shop.get(route);
    assert.equal(r.status, 200, route);
    assert.doesNotMatch(r.text, crmTraces, `${route} shows nothing of crm`);
  }
  for (const route of ['/messages?account=crm', '/suppressions?account=crm', '/suppressions/export.csv?account=crm', '/statistics?account=crm', '/statistics/tags.csv?account=crm', '/webhooks?account=crm', '/captured', '/suppressions/remove?account=crm&address=crm-only@example.com']) {
    assert.equal((await shop.get(route)).status, 403, route);
  }
  for (const route of [`/messages/${crmDelivered.queueId}`, `/captured/${crmCopy}`, `/captured/${crmCopy}/body.html`, `/captured/${crmCopy}/raw.eml`]) {
    const r = await shop.get(route);
    assert.equal(r.status, 404, route);
    assert.doesNotMatch(r.text, /bob@crm-customer|crm-msg/, route);
  }
  // Changes aimed at crm are refused and change nothing.
  await shop.get('/');
  assert.equal((await shop.post('/pause', { account: 'crm', reason: 'x' })).status, 403);
  assert.equal((await shop.post('/suppressions/remove', { account: 'crm', address: 'crm-only@example.com' })).status, 403);
  assert.equal((await shop.post('/suppressions/add', { account: 'crm', address: 'planted@example.com' })).status, 403);
  const crmList = await crm.get('/suppressions');
  assert.match(crmList.text, /crm-only@example\.com/, 'the crm entry is still there');
  assert.doesNotMatch(crmList.text, /planted@example\.com/);
  const q = (await (await fetch(`${base}/api/queue`, { headers: { authorization: `Bearer ${nodeKey}` } })).json()) as { delivery: { paused: { accounts: string[] } } };
  assert.deepEqual(q.delivery.paused.accounts, [], 'crm not paused');
  // And the other way round: crm's key session sees none of the shop.
  for (const route of ['/', '/messages', '/suppressions', '/suppressions/export.csv', '/statistics', '/statistics/tags.csv', '/webhooks']) assert.doesNotMatch((await crm.get(route)).text, /shop|alice@|orders-hook/, route);
  assert.equal((await crm.get(`/captured/${shopCopy}/raw.eml`)).status, 404);
});

test('every page sends a CSP without inline script; captured bodies get their own sandboxing policy', { timeout: 30_000 }, async () => {
  const op = await Client.login('', nodeKey);
  const delivered = (await apiEvents(nodeKey, '&type=delivered'))[0]!;
  const copy = capturedId(delivered);
  const login = await fetch(`${base}/login`);
  assert.match(login.headers.get('content-security-policy') ?? '', /script-src 'self'/, '/login');
  const pages = ['/', '/messages', `/messages/${delivered.queueId}`, '/suppressions', '/statistics', '/webhooks', '/suppressions/remove?account=default&address=x@example.com', '/captured', `/captured/${copy}`, '/assets/dashboard.css', '/messages/NOSUCH'];
  for (const route of pages) {
    const r = await op.get(route);
    assert.ok(r.status === 200 || r.status === 404, `${route}: ${r.status}`);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'/, route);
    assert.match(csp, /frame-ancestors 'none'/, route);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, route);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', route);
    if (r.headers.get('content-type')?.startsWith('text/html')) assert.doesNotMatch(r.text, /<script(?![^>]*\bsrc=)[^>]*>/, `${route}: no inline script element`);
  }
  const body = await op.get(`/captured/${copy}/body.html`);
  const bodyCsp = body.headers.get('content-security-policy') ?? '';
  assert.match(bodyCsp, /default-src 'none'/);
  assert.match(bodyCsp, /\bsandbox\b/);
  assert.doesNotMatch(bodyCsp, /script-src/);
});

test('suppressions import and export, search by time range and cursor, logout — over plain HTTP', { timeout: 30_000 }, async () => {
  const op = await Client.login('', nodeKey);
  await op.get('/suppressions');
  const imp = await op.post('/suppressions/import', { account: 'default', reason: 'manual', csv: 'address\nimp1@example.com\nnot-an-address\nimp2@example.com,list:news,from the old system\n' });
  assert.equal(imp.status, 200);
  assert.match(imp.text, /Imported 2 addresses into default; 1 row rejected/);
  assert.match(imp.text, /<td>3<\/td><td>not-an-address: not an address/);
  const csv = await op.get('/suppressions/export.csv?account=default');
  assert.match(csv.headers.get('content-type') ?? '', /text\/csv/);
  assert.match(csv.text, /^account,address,scope,reason,at,detail,queueId\r?\n/);
  assert.match(csv.text, /default,imp1@example\.com,\*,manual,/);
  assert.match(csv.text, /default,imp2@example\.com,list:news,manual,[^,]+,from the old system/);
  assert.equal((await op.post('/suppressions/add', { account: 'default', address: 'no-at-sign' })).status, 400, 'a bad address is refused with a reason');

  // Time range and cursor over the event log.
  const seqs = async (route: string): Promise<number[]> => [...(await op.get(route)).text.matchAll(/data-seq="(\d+)"/g)].map((m) => Number(m[1]));
  const all = await seqs('/messages?recipient=ada%40example.com');
  assert.ok(all.length >= 2, 'ada has events');
  assert.deepEqual(all, [...all].sort((a, b) => b - a), 'newest first by default');
  const asc = [...all].reverse();
  assert.deepEqual(await seqs('/messages?recipient=ada%40example.com&from=2099-01-01T00:00'), [], 'none after 2099');
  assert.deepEqual(await seqs('/messages?recipient=ada%40example.com&to=2000-01-01T00:00'), [], 'none before 2000');
  assert.deepEqual(await seqs('/messages?recipient=ada%40example.com&from=2000-01-01T00:00&to=2099-01-01T00:00'), all);
  assert.deepEqual(await seqs(`/messages?recipient=ada%40example.com&before=${all[0]}`), all.slice(1), 'before=<seq>: the older ones');
  assert.deepEqual(await seqs('/messages?recipient=ada%40example.com&after=0'), asc, 'after=0: oldest first');
  assert.deepEqual(await seqs(`/messages?recipient=ada%40example.com&after=${asc[0]}`), asc.slice(1), 'after=<seq> continues past that event');
  assert.equal((await op.get('/messages?from=yesterday')).status, 400);
  assert.equal((await op.get('/messages?after=-1')).status, 400);
  assert.equal((await op.get('/messages?before=x')).status, 400);

  // Logout ends the session on the server, not only in the browser.
  assert.equal((await op.post('/logout', {})).status, 303);
  const gone = await op.get('/');
  assert.equal(gone.status, 303);
  assert.equal(gone.headers.get('location'), '/login');
});
