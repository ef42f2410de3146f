/*
 * The message archive, copy actions and forwarders on the dashboard of a real node
 * (`postino up`: the archive is on by default there), in headless Chromium
 * (Debian's /usr/bin/chromium through playwright-core) and over plain HTTP:
 *
 *  - a message with an HTML part holding <script> and a text part: its page shows the
 *    archived source's headers, text part and HTML in a sandboxed iframe, and the
 *    script does not run (no dialog, no request reaches the beacon server);
 *  - the .eml download is what was sent (the body part byte for byte);
 *  - another account's session cannot fetch it (by URL, either account in the path)
 *    and an account whose archive is off (accounts[].archive.enabled false) gets
 *    "not archived";
 *  - after retention (pruneArchive driven with a clock 9 days on, over the node's own
 *    archive folder) the page says the source is not archived and the download is 404;
 *  - a copy the sink defers (451) is retried from its page and delivered; another is
 *    dropped (with a confirmation), gets a `failed` event and is never delivered;
 *    another account cannot act on it, nor without the CSRF token;
 *  - the overview lists the forwarder's address with its account and last seen time,
 *    and an account's overview only its own senders.
 * Screenshots under <tmp>/dashboard-archive-screens/. Without chromium the browser
 * test is skipped visibly (failed under POSTINO_REQUIRE_PEERS=1).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { PostinoEvent } from '../../common/events.js';
import { hashPassword } from '../../common/password-hash.js';
import { Store } from '../../common/store.js';
import { pruneArchive } from '../../engine/archive/archive-retention.js';
import { MessageArchive } from '../../engine/archive/message-archive.js';
import { until } from '../helpers/feedback.js';
import { startBrowserNode, type Chromium } from '../helpers/browser.js';
import { DashboardClient } from '../helpers/dashboard-client.js';
import { tempDir, upConfig, type Running, type UpPorts } from '../helpers/postino.js';
import { readSink, waitForSink } from '../helpers/sink-reader.js';
import { open, send } from '../helpers/smtp-session.js';

const SHOP_PASSWORD = 'shop dashboard password';
const DAY_MS = 86_400_000;

let up: Running;
let ports: UpPorts;
let dataDir: string;
let nodeKey: string;
let base: string;
let browser: Browser | undefined;
let skipBrowser: string | undefined;
let chrome: Chromium | undefined;

before(async () => {
  dataDir = tempDir('dashboard-archive');
  const shopHash = await hashPassword(SHOP_PASSWORD);
  const c = await upConfig(() => ({
    accounts: [
      { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
      { id: 'shop', networks: ['127.0.0.2/32'], listener: { requireTls: false }, dashboard: { passwordHash: shopHash }, archive: { enabled: false } },
    ],
    // A deferred copy waits an hour unless retried: the test's retry is the one that sends it.
    delivery: { retryScheduleSeconds: [3600] },
    sink: {
      rules: [
        { recipient: 'later@defer-a.test', reply: '451 4.3.0 refused once (test)', times: 1 },
        { recipient: 'never@defer-b.test', reply: '451 4.3.0 refused always (test)', times: null },
      ],
    },
  }));
  ports = c.ports;
  base = `http://127.0.0.1:${ports.http}`;
  ({ up, nodeKey, chrome } = await startBrowserNode(dataDir, c.config, 'dashboard-archive-screens'));
  browser = chrome.browser;
  skipBrowser = chrome.skip;
});

after(async () => {
  await chrome?.close();
  if (up) assert.equal(await up.stop(), 0);
});

const sinkDir = (): string => path.join(dataDir, 'sink');

/** Through the forwarder (account default), or from 127.0.0.2 straight to the listener (account shop). Returns the message as sent. */
async function sendMail(to: string, id: string, o: { html?: string; shop?: boolean } = {}): Promise<string> {
  const c = o.shop ? await open(ports.listener, { local: '127.0.0.2' }) : await open(ports.forwarder);
  const from = o.shop ? 'news@shop.example' : 'shop@example.org';
  const head = `From: ${from}\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@test.example>\r\nX-Test-Id: ${id}\r\n`;
  const body = o.html
    ? `${head}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nText part of ${id}.\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${o.html}\r\n--b1--`
    : `${head}\r\nHello from ${id}.`;
  const r = await send(c, from, [to], body);
  c.close();
  assert.match(r, /^250 /, `${id} accepted`);
  return body;
}

async function apiEvents(query = ''): Promise<PostinoEvent[]> {
  const r = await fetch(`${base}/api/events?limit=10000${query}`, { headers: { authorization: `Bearer ${nodeKey}` } });
  assert.equal(r.status, 200);
  return (await r.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent);
}

/** A logged-in HTTP client without a browser (test/helpers/dashboard-client.ts) on this node. */
const Client = { login: (account: string, secret: string): Promise<DashboardClient> => DashboardClient.login(base, account, secret) };

const shot = (page: Page, name: string): Promise<void> => chrome!.shot(page, name);

const bodyPart = (raw: Buffer | string): Buffer => {
  const b = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
  return b.subarray(b.indexOf('\r\n\r\n') + 4);
};

test('the archived source in a browser: headers, text, sandboxed HTML, .eml; retry and drop of deferred copies; forwarders on the overview', { timeout: 150_000 }, async (t) => {
  if (skipBrowser || !browser) return t.skip(skipBrowser);
  const t0 = Date.now();
  const hits: string[] = [];
  const beacon = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    res.end('x');
  });
  await new Promise<void>((r) => beacon.listen(0, '127.0.0.1', r));
  const b = `http://127.0.0.1:${(beacon.address() as AddressInfo).port}`;
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  const dialogs: string[] = [];
  const finished: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  ctx.on('requestfinished', (r) => finished.push(r.url()));
  try {
    // One message with a hostile HTML part and a text part; two the sink defers.
    const sent = await sendMail('ada@example.com', 'archived-1', { html: `<p>Hi <b>Ada</b></p><script>alert('xss');fetch('${b}/script')</script><img src="${b}/pixel.gif"><img src="x" onerror="alert('onerror')">` });
    await sendMail('later@defer-a.test', 'deferred-1');
    await sendMail('never@defer-b.test', 'deferred-2');
    await sendMail('bob@example.com', 'shop-1', { shop: true });
    await waitForSink(sinkDir(), (m) => m.some((x) => x.testId === 'archived-1'), 30_000);
    const deferred = await until('both copies deferred', async () => {
      const ev = await apiEvents('&type=deferred');
      const a = ev.find((e) => e.recipient === 'later@defer-a.test');
      const n = ev.find((e) => e.recipient === 'never@defer-b.test');
      return a && n ? { later: a, never: n } : undefined;
    }, 30_000);

    await page.goto(`${base}/login`);
    await page.fill('input[name=secret]', nodeKey);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

    // The forwarder on the overview: its address, account, last seen.
    const fw = page.locator('#forwarders tr[data-address="127.0.0.1"][data-account="default"]');
    assert.equal(await fw.count(), 1, 'the forwarder is listed');
    assert.match((await fw.textContent()) ?? '', /forwarder/, 'known as a forwarder (its spool id), not an application');
    assert.match((await fw.locator('td.last-seen').textContent()) ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.ok(Number(await fw.locator('td.today').textContent()) >= 3, 'three messages today from the forwarder');
    assert.equal(await page.locator('#forwarders tr[data-address="127.0.0.2"][data-account="shop"]').count(), 1, 'the shop application is listed too');
    await shot(page, 'overview-forwarders');

    // The archived source: headers, text part, HTML in a sandboxed frame, script inert.
    await page.goto(`${base}/messages/archived-1@test.example`);
    const archive = page.locator('#archive');
    assert.match((await page.locator('#archive-headers').textContent()) ?? '', /archived-1/);
    assert.match((await archive.locator('pre.text-part').textContent()) ?? '', /Text part of archived-1\./);
    assert.equal(await page.getAttribute('iframe.mail-source', 'sandbox'), '', 'sandboxed without allow-scripts');
    assert.equal(await page.frameLocator('iframe.mail-source').locator('b').textContent(), 'Ada', 'the HTML part is rendered');
    await new Promise((r) => setTimeout(r, 1_000));
    assert.deepEqual(dialogs, [], 'no dialog opened');
    assert.deepEqual(hits, [], 'the beacon server got no request');
    assert.deepEqual(finished.filter((u) => u.startsWith(b)), [], 'the browser made no request to the beacon');
    await shot(page, 'message-archived-source');

    // The download is what was sent (the body part, byte for byte).
    const href = await page.getAttribute('#archive-download', 'href');
    assert.ok(href && /^\/archive\/default\/[0-9A-Z]+\/raw\.eml$/.test(href), `download link ${href}`);
    const eml = await page.request.get(base + href);
    assert.equal(eml.status(), 200);
    assert.match(eml.headers()['content-type'] ?? '', /message\/rfc822/);
    // The CRLF before the final dot ends the message's last line (RFC 5321 4.1.1.4): it is part of the message.
    assert.ok(bodyPart(await eml.body()).equals(bodyPart(`${sent}\r\n`)), 'the archived body is the body sent');

    // Another account: nothing, whichever account the URL names.
    const shop = await Client.login('shop', SHOP_PASSWORD);
    assert.equal((await shop.get(href)).status, 403, 'shop cannot name the default account');
    assert.equal((await shop.get(href.replace('/default/', '/shop/'))).status, 404, 'nor reach it through its own');
    assert.equal((await shop.get(href.replace('raw.eml', 'body.html').replace('/default/', '/shop/'))).status, 404);
    assert.equal((await shop.get('/messages/archived-1@test.example')).status, 404, 'nor its page');
    const shopOverview = await shop.get('/');
    assert.doesNotMatch(shopOverview.text, /data-address="127\.0\.0\.1"/, 'shop sees only its own senders');
    assert.match(shopOverview.text, /data-address="127\.0\.0\.2"/);
    // The shop's own message: its archive is off.
    const shopPage = await until('the shop message has events', async () => {
      const r = await shop.get('/messages/shop-1@test.example');
      return r.status === 200 ? r : undefined;
    }, 20_000);
    assert.match(shopPage.text, /id="archive-missing"[^>]*>[^<]*the archive is off for this account/);

    // Retention: nine days on, the node's archive folder is pruned; the page says so.
    // The node's LevelDB is locked by the node: this pass gets a store of its own, so the node's
    // index entries stay while their segments go, and a read must say "not archived" regardless.
    const scratchStore = await Store.open(tempDir('archive-prune-store'));
    const pruned = await pruneArchive(new MessageArchive(path.join(dataDir, 'hosted', 'archive'), () => ({ enabled: true, retentionDays: 7 }), scratchStore), Date.now() + 9 * DAY_MS);
    await scratchStore.close();
    assert.ok(pruned.folders >= 1, 'the day folder went');
    await page.reload();
    assert.match((await page.locator('#archive-missing').textContent()) ?? '', /not archived: past its retention of 7 days/);
    assert.equal((await page.request.get(base + href)).status(), 404, 'the download is gone too');
    await shot(page, 'message-not-archived');

    // Retry a deferred copy from its page: delivered.
    await page.goto(`${base}/messages/deferred-1@test.example`);
    const later = page.locator(`#queued-copies tr[data-copy="${deferred.later.queueId}"]`);
    assert.equal(await later.getAttribute('data-state'), 'deferred');
    assert.match((await later.textContent()) ?? '', /refused once/);
    await shot(page, 'message-deferred-copy');
    await Promise.all([page.waitForURL(/done=retried/), later.locator('button').click()]);
    assert.match((await page.textContent('#copy-action-done')) ?? '', /due now/);
    const got = await waitForSink(sinkDir(), (m) => m.some((x) => x.testId === 'deferred-1'), 20_000);
    assert.ok(got.some((x) => x.testId === 'deferred-1'), 'retried and delivered');

    // Drop the other: not without the token, not by another account; with a confirmation, gone for good.
    const never = deferred.never.queueId!;
    const op = await Client.login('', nodeKey);
    assert.equal((await op.post(`/copies/${never}/drop`, { back: 'deferred-2@test.example' }, false)).status, 403, 'no CSRF token: 403');
    await shop.get('/');
    assert.equal((await shop.post(`/copies/${never}/drop`, {})).status, 404, 'another account cannot drop it');
    assert.equal((await shop.post(`/copies/${never}/retry`, {})).status, 404, 'nor retry it');
    await page.goto(`${base}/messages/deferred-2@test.example`);
    await Promise.all([page.waitForURL(/\/copies\/[0-9A-Z]+\/drop/), page.click(`#queued-copies tr[data-copy="${never}"] a.drop`)]);
    await shot(page, 'drop-confirm');
    await Promise.all([page.waitForURL(/done=dropped/), page.click('#confirm-drop button')]);
    assert.match((await page.textContent('#copy-action-done')) ?? '', /dropped/);
    assert.equal(await page.locator(`#queued-copies tr[data-copy="${never}"]`).count(), 0, 'no longer waiting');
    const failed = (await apiEvents('&type=failed')).find((e) => e.queueId === never);
    assert.ok(failed, 'the dropped copy has a failed event');
    assert.match(failed.reason ?? '', /dropped by operator .*dashboard/);
    assert.equal((await op.post(`/copies/${never}/retry`, {})).status, 404, 'nothing left to retry');
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(readSink(sinkDir()).filter((x) => x.testId === 'deferred-2').length, 0, 'never delivered');
    await shot(page, 'message-dropped');
    console.log(`# browser flow: ${Date.now() - t0} ms`);
  } finally {
    await ctx.close();
    beacon.close();
  }
});
