/*
 * The unsubscribe and tracking links, over real HTTP: what a mailbox
 * provider's one-click POST, a person's browser and a link scanner see, and
 * what lands in the suppression list and the event feed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startFeedbackNode, type FeedbackNode } from '../../helpers/feedback.js';

let n: FeedbackNode;
before(async () => {
  n = await startFeedbackNode();
});
after(async () => n.close());

const BROWSER = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15';

function flip(url: string, from: number): string {
  const i = url.length - from;
  return url.slice(0, i) + (url[i] === 'A' ? 'B' : 'A') + url.slice(i + 1);
}

test('GET /u/<token> shows a confirmation page with the address masked and one button; nothing is recorded', async () => {
  const c = await n.copy('ada.lovelace@example.com', { list: 'news' });
  const res = await fetch(c.unsubscribeUrl);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/html/);
  assert.match(res.headers.get('content-security-policy')!, /default-src 'none'/);
  const html = await res.text();
  assert.match(html, /a•••••e@example\.com/);
  assert.doesNotMatch(html, /ada\.lovelace/);
  assert.match(html, /<form method="post"><input type="hidden" name="confirm" value="page"><button type="submit">Unsubscribe<\/button><\/form>/);
  assert.doesNotMatch(html, /<script/i);
  assert.equal(await n.suppression.get('acme', 'ada.lovelace@example.com', 'list:news'), undefined, 'a GET (link scanners) never unsubscribes');
  assert.equal((await n.feed()).filter((e) => e.type === 'unsubscribed').length, 0);
});

test('RFC 8058 one-click POST: 200, suppressed in the list scope, a second POST 200 too, one event only', async () => {
  const c = await n.copy('bob@example.com', { list: 'news' });
  const post = (): Promise<Response> => fetch(c.unsubscribeUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
  const [a, b] = await Promise.all([post(), post()]);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  assert.equal((await post()).status, 200);
  const entry = await n.suppression.get('acme', 'bob@example.com', 'list:news');
  assert.equal(entry?.reason, 'unsubscribe');
  assert.equal(await n.suppression.get('acme', 'bob@example.com', '*'), undefined, 'only the list, not the whole account');
  const evs = (await n.feed()).filter((e) => e.type === 'unsubscribed' && e.recipient === 'bob@example.com');
  assert.equal(evs.length, 1, 'three POSTs, two of them concurrent: one event');
  assert.equal(evs[0]!.via, 'one-click');
  assert.equal(evs[0]!.list, 'news');
  assert.equal(evs[0]!.queueId, c.queueId);
  assert.equal(evs[0]!.messageId, c.messageId);
  assert.equal(evs[0]!.tag, 'order-1');
  assert.deepEqual(evs[0]!.metadata, { customer: 'c-77' });
});

test('one-click as multipart/form-data (RFC 8058 allows both encodings) and the page button both unsubscribe', async () => {
  const c = await n.copy('carol@example.com');
  const form = new FormData();
  form.set('List-Unsubscribe', 'One-Click');
  assert.equal((await fetch(c.unsubscribeUrl, { method: 'POST', body: form })).status, 200);
  assert.equal((await n.suppression.get('acme', 'carol@example.com', '*'))?.reason, 'unsubscribe', 'no list: account-wide');
  const d = await n.copy('dan@example.com');
  const res = await fetch(d.unsubscribeUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'confirm=page' });
  assert.equal(res.status, 200);
  assert.match(await res.text(), /You are unsubscribed/);
  const ev = (await n.feed()).find((e) => e.type === 'unsubscribed' && e.recipient === 'dan@example.com');
  assert.equal(ev?.via, 'page');
});

test('open pixel: a GIF that is never cached; first and repeat opens told apart; Apple MPP is a machine', async () => {
  const c = await n.copy('erin@example.com');
  const first = await fetch(c.openUrl, { headers: { 'user-agent': BROWSER } });
  assert.equal(first.status, 200);
  assert.equal(first.headers.get('content-type'), 'image/gif');
  assert.match(first.headers.get('cache-control')!, /no-store/);
  const gif = Buffer.from(await first.arrayBuffer());
  assert.equal(gif.subarray(0, 6).toString('latin1'), 'GIF89a');
  await fetch(c.openUrl, { headers: { 'user-agent': 'Mozilla/5.0' } });
  const opens = (await n.feed()).filter((e) => e.type === 'opened' && e.queueId === c.queueId);
  assert.deepEqual(
    opens.map((e) => [e.first, e.machine, e.userAgent]),
    [
      [true, false, 'browser'],
      [false, true, 'apple-mpp'],
    ],
  );
  assert.equal(opens[0]!.messageId, c.messageId);
});

test('click: 302 to the URL in the token, clicked with the URL; a scanner and an instant click are machines', async () => {
  const target = 'https://shop.example.com/order/1234?utm_source=mail&x=%C3%A9#top';
  const c = await n.copy('fay@example.com');
  const res = await fetch(c.clickUrl(target), { redirect: 'manual', headers: { 'user-agent': BROWSER } });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), target);
  const fresh = await n.copy('gus@example.com', { due: Date.now() });
  await fetch(fresh.clickUrl(target), { redirect: 'manual', headers: { 'user-agent': BROWSER } });
  await fetch(c.clickUrl(target), { redirect: 'manual', headers: { 'user-agent': 'Mozilla/5.0 (compatible; Barracuda Sentinel)' } });
  const clicks = (await n.feed()).filter((e) => e.type === 'clicked');
  const of = (q: string) => clicks.filter((e) => e.queueId === q).map((e) => [e.url, e.machine, e.userAgent]);
  assert.deepEqual(of(c.queueId), [
    [target, false, 'browser'],
    [target, true, 'scanner'],
  ]);
  assert.deepEqual(of(fresh.queueId), [[target, true, 'scanner']], 'clicked within seconds of leaving: a link scanner');
});

test('a long tracked URL (2,000 characters) still works: the route parameter limit is raised', async () => {
  const target = `https://shop.example.com/p?q=${'x'.repeat(2000)}`;
  const c = await n.copy('hal@example.com');
  const res = await fetch(c.clickUrl(target), { redirect: 'manual' });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get('location'), target);
});

test('forgery: one character changed in a /u, /t/o or /t/c token → 400 page, no redirect, nothing suppressed, no event', async () => {
  const c = await n.copy('ivy@example.com');
  const before = (await n.feed()).length;
  for (const url of [c.unsubscribeUrl, c.openUrl, c.clickUrl('https://shop.example.com/')]) {
    for (const from of [1, 5, 20]) {
      const bad = flip(url, from);
      for (const method of url.includes('/u/') ? ['GET', 'POST'] : ['GET']) {
        const res = await fetch(bad, { method, redirect: 'manual', ...(method === 'POST' ? { body: 'List-Unsubscribe=One-Click', headers: { 'content-type': 'application/x-www-form-urlencoded' } } : {}) });
        assert.equal(res.status, 400, `${method} ${bad}`);
        assert.equal(res.headers.get('location'), null);
        assert.match(await res.text(), /This link is not valid/);
      }
    }
    const cut = url.slice(0, -10);
    assert.equal((await fetch(cut, { redirect: 'manual' })).status, 400, 'truncated');
  }
  assert.equal((await fetch(`${n.base}/t/c/`, { redirect: 'manual' })).status, 400, 'an empty token');
  assert.equal(await n.suppression.get('acme', 'ivy@example.com', '*'), undefined);
  assert.equal((await n.feed()).length, before, 'no event from a bad token');
});
