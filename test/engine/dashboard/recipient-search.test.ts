/*
 * The dashboard's message search by a whole address goes through the recipient
 * index (engine/events/recipient-index.ts): newest first (`before=`) and oldest
 * first (`after=`) each show every match once and in order, in pages of 50 and
 * with no "continue" stretches even when the matches are older than a scan
 * budget; any case matches; other fields still narrow; an account session sees
 * its own; part of an address still scans.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { EventInput } from '../../../common/events.js';
import { newAccountKey } from '../../../common/api-keys.js';
import { RecipientIndex, recipientIndexKey } from '../../../engine/events/recipient-index.js';
import { messagesPage, NODE_KEY, sessionCookie, startDashboardApp, type DashboardApp } from '../../helpers/dashboard-app.js';

let d: DashboardApp;
let op: string;
let shop: string;
const ada: Array<{ seq: number; account: string; type: string }> = [];

function ev(i: number, recipient: string, account = 'default', type: 'delivered' | 'bounced' = 'delivered'): EventInput {
  return { type, account, recipient, sender: 'shop@example.org', queueId: `Q${i}`, at: new Date(Date.UTC(2026, 10, 1) + i * 1000).toISOString() };
}

before(async () => {
  const key = await newAccountKey();
  d = await startDashboardApp({ accounts: [{ id: 'default' }, { id: 'shop', apiKeys: [key.entry] }] });
  await new RecipientIndex(d.events.store, d.events).backfill(); // as indexEvents does on a hosted node
  // 130 for ada among 390 (some as Ada@EXAMPLE.com, some bounced, some in shop), then 60,000 others.
  const first: EventInput[] = [];
  for (let i = 0; i < 390; i++) {
    const isAda = i % 3 === 0;
    first.push(ev(i, isAda ? (i % 9 === 0 ? 'Ada@EXAMPLE.com' : 'ada@example.com') : `other${i}@example.com`, i % 5 === 0 ? 'shop' : 'default', i % 4 === 0 ? 'bounced' : 'delivered'));
  }
  first.push(ev(999, 'xada@example.com')); // contains the address: a part match, not this address
  for (const e of await d.events.append(first)) if (e.recipient?.toLowerCase() === 'ada@example.com') ada.push({ seq: e.seq, account: e.account, type: e.type });
  for (let b = 0; b < 60_000; b += 10_000) await d.events.append(Array.from({ length: 10_000 }, (_, j) => ev(1000 + b + j, `bulk${b + j}@example.net`)));
  op = await sessionCookie(d, NODE_KEY);
  shop = await sessionCookie(d, key.token);
});

after(async () => {
  await d.close();
});

const page = (cookie: string, route: string): ReturnType<typeof messagesPage> => messagesPage(d, cookie, route);

async function walk(cookie: string, route: string): Promise<{ seqs: number[]; pages: number[][] }> {
  const pages: number[][] = [];
  let next: string | undefined = route;
  while (next) {
    const p = await page(cookie, next);
    assert.doesNotMatch(p.body, /Continue searching/, 'the index never stops short of a match');
    pages.push(p.seqs);
    next = p.next;
    assert.ok(pages.length < 20, 'the pager ends');
  }
  return { seqs: pages.flat(), pages };
}

test('a whole address: newest first and oldest first show every match once, in order, in full pages', async () => {
  const all = ada.map((a) => a.seq);
  const newest = await walk(op, '/messages?recipient=ada%40example.com');
  assert.deepEqual(newest.seqs, [...all].reverse());
  assert.deepEqual(newest.pages.map((p) => p.length), [50, 50, 30], 'pages of 50, and no empty last page');
  const oldest = await walk(op, '/messages?recipient=ADA%40Example.COM&after=0');
  assert.deepEqual(oldest.seqs, all);
  const typed = await walk(op, '/messages?recipient=ada%40example.com&type=bounced&after=0');
  assert.deepEqual(typed.seqs, ada.filter((a) => a.type === 'bounced').map((a) => a.seq));
  // Through the index: an entry taken away (white box) is a row the search no longer shows.
  const gone = ada[5]!;
  await d.events.store.commit([{ type: 'del', key: recipientIndexKey(gone.account, 'ada@example.com', gone.seq) }], { sync: false });
  assert.ok(!(await walk(op, '/messages?recipient=ada%40example.com&after=0')).seqs.includes(gone.seq));
  await d.events.store.commit([{ type: 'put', key: recipientIndexKey(gone.account, 'ada@example.com', gone.seq), value: Buffer.alloc(0) }], { sync: false });
});

test('part of an address still scans (substring match), an account session sees its own only', { timeout: 60_000 }, async () => {
  const part = await walk(op, '/messages?recipient=ada%40example.com'.replace('ada', 'xada'));
  assert.equal(part.seqs.length, 1, 'xada@example.com is its own address');
  const partial = await page(op, '/messages?recipient=ada%40example&after=0');
  assert.ok(partial.seqs.length === 50 && partial.seqs.includes(ada[0]!.seq), 'part of an address matches as a substring');
  const mine = await walk(shop, '/messages?recipient=ada%40example.com&after=0');
  assert.deepEqual(mine.seqs, ada.filter((a) => a.account === 'shop').map((a) => a.seq));
  const r = await d.app.inject({ method: 'GET', url: '/messages?recipient=ada%40example.com&account=default', headers: { cookie: shop } });
  assert.equal(r.statusCode, 403);
});
