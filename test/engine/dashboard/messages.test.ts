/*
 * Message search over a real event log through the dashboard's pages (fastify inject):
 * cursor paging newest first (`before`) and oldest first (`after`) visits every match
 * once and in order; a page reads at most its budget (50,000 events) and then offers to
 * continue, and continuing finds a match older than that; account sessions see their own.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { EventInput } from '../../../common/events.js';
import { newAccountKey } from '../../../common/api-keys.js';
import { messagesPage, NODE_KEY, sessionCookie, startDashboardApp, type DashboardApp } from '../../helpers/dashboard-app.js';

let d: DashboardApp;
let op: string;
let shop: string;
const ada: number[] = [];

function ev(i: number, recipient: string, account = 'default'): EventInput {
  return { type: 'delivered', account, recipient, sender: 'shop@example.org', queueId: `Q${i}`, at: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString() };
}

before(async () => {
  const key = await newAccountKey();
  d = await startDashboardApp({ accounts: [{ id: 'default' }, { id: 'shop', apiKeys: [key.entry] }] });
  // 130 for ada among 390, then 60,000 others: ada's are older than one page's budget.
  const first: EventInput[] = [];
  for (let i = 0; i < 390; i++) first.push(ev(i, i % 3 === 0 ? 'ada@example.com' : `other${i}@example.com`, i % 5 === 0 ? 'shop' : 'default'));
  for (const e of await d.events.append(first)) if (e.recipient === 'ada@example.com') ada.push(e.seq);
  for (let b = 0; b < 60_000; b += 10_000) await d.events.append(Array.from({ length: 10_000 }, (_, j) => ev(1000 + b + j, `bulk${b + j}@example.net`)));
  op = await sessionCookie(d, NODE_KEY);
  shop = await sessionCookie(d, key.token);
});

after(async () => {
  await d.close();
});

const page = (cookie: string, route: string): ReturnType<typeof messagesPage> => messagesPage(d, cookie, route);

/** Follows the pager from `route` to the end; returns every seq shown and the number of requests. */
async function walk(cookie: string, route: string): Promise<{ seqs: number[]; requests: number }> {
  const seqs: number[] = [];
  let next: string | undefined = route;
  let requests = 0;
  while (next) {
    const p = await page(cookie, next);
    seqs.push(...p.seqs);
    next = p.next;
    requests++;
    assert.ok(requests < 20, 'the pager ends');
  }
  return { seqs, requests };
}

test('newest first (before=) and oldest first (after=) each visit every match once, in order, across the scan budget', { timeout: 60_000 }, async () => {
  const newest = await walk(op, '/messages?recipient=ada%40example.com');
  assert.deepEqual(newest.seqs, [...ada].reverse());
  // 60,000 newer events: the first window (50,000) holds none of ada's, so the first answer is an empty "continue".
  const firstPage = await page(op, '/messages?recipient=ada%40example.com');
  assert.deepEqual(firstPage.seqs, []);
  assert.match(firstPage.body, /Continue searching/);
  const oldest = await walk(op, '/messages?recipient=ada%40example.com&after=0');
  assert.deepEqual(oldest.seqs, ada);
  assert.ok(oldest.requests >= 3, 'pages of 50');
});

test('an account session searches its own events only, and naming another account is 403', { timeout: 60_000 }, async () => {
  const mine = await walk(shop, '/messages?recipient=ada%40example.com&after=0');
  assert.ok(mine.seqs.length > 0);
  const shopSeqs = new Set((await d.events.read(0, 1_000)).filter((e) => e.account === 'shop' && e.recipient === 'ada@example.com').map((e) => e.seq));
  assert.deepEqual(mine.seqs, [...shopSeqs]);
  const r = await d.app.inject({ method: 'GET', url: '/messages?account=default', headers: { cookie: shop } });
  assert.equal(r.statusCode, 403);
});
