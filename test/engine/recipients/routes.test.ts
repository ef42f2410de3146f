/*
 * The recipients API on a real LevelDB over real HTTP: PUT/PATCH/GET of
 * fields, the errors a bad field gets, listing filters and cursor paging, and
 * account keys kept to their own account.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RecipientView } from '../../../engine/recipient-db.js';
import { startRecipientsNode, type RecipientsNode } from './harness.js';

type Entry = RecipientView & { suppressed: boolean };
let n: RecipientsNode;

before(async () => {
  n = await startRecipientsNode();
});
after(async () => n.close());

async function json<T>(r: Response, status: number): Promise<T> {
  const text = await r.text();
  assert.equal(r.status, status, text);
  return JSON.parse(text) as T;
}

test('PUT creates (201) and replaces fields, PATCH sets and removes, GET shows the entry; the domain is case-folded', async () => {
  let e = await json<Entry>(await n.api('/api/recipients/Ada@Example.COM?account=acme', { method: 'PUT', body: { fields: { first_name: 'Ada', city: 'London' } } }), 201);
  assert.equal(e.address, 'Ada@example.com');
  assert.deepEqual(e.fields, { first_name: 'Ada', city: 'London' });
  assert.equal(e.sent, 0);
  assert.equal(e.suppressed, false);
  e = await json<Entry>(await n.api('/api/recipients/Ada@example.com?account=acme', { method: 'PATCH', body: { fields: { city: null, plan: 'pro' } } }), 200);
  assert.deepEqual(e.fields, { first_name: 'Ada', plan: 'pro' });
  e = await json<Entry>(await n.api('/api/recipients/Ada@example.com?account=acme', { method: 'PUT', body: { fields: { nick: 'A' } } }), 200);
  assert.deepEqual(e.fields, { nick: 'A' });
  e = await json<Entry>(await n.api('/api/recipients/Ada%40EXAMPLE.com?account=acme'), 200);
  assert.deepEqual(e.fields, { nick: 'A' });
  assert.equal((await n.api('/api/recipients/nobody@example.com?account=acme')).status, 404);
});

test('a bad field name or value is refused with its reason, nothing stored', async () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ fields: { 'first name': 'x' } }, /field name "first name"/],
    [{ fields: { '1st': 'x' } }, /field name "1st"/],
    [{ fields: { n: 3 } }, /field "n" is not a string/],
    [{ fields: { n: 'x'.repeat(5000) } }, /longer than 4096/],
    [{ fields: ['a'] }, /flat JSON object/],
    [{}, /flat JSON object/],
  ];
  for (const [body, re] of cases) {
    const r = await json<{ error: string }>(await n.api('/api/recipients/bad@example.com?account=acme', { method: 'PATCH', body }), 400);
    assert.match(r.error, re);
  }
  assert.equal((await n.api('/api/recipients/bad@example.com?account=acme')).status, 404, 'nothing created');
  // At most 100 fields, also when two PATCHes of 60 would add up to more.
  const sixty = (p: string): Record<string, string> => Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`${p}${i}`, 'v']));
  assert.equal((await n.api('/api/recipients/many@example.com?account=acme', { method: 'PATCH', body: { fields: sixty('a') } })).status, 201);
  assert.match((await json<{ error: string }>(await n.api('/api/recipients/many@example.com?account=acme', { method: 'PATCH', body: { fields: sixty('b') } }), 400)).error, /more than 100 fields/);
  assert.equal(Object.keys((await json<{ fields: object }>(await n.api('/api/recipients/many@example.com?account=acme'), 200)).fields).length, 60);
  assert.match((await json<{ error: string }>(await n.api('/api/recipients/not-an-address?account=acme', { method: 'PUT', body: { fields: {} } }), 400)).error, /not an address/);
  assert.match((await json<{ error: string }>(await n.api('/api/recipients/a@example.com', { method: 'PUT', body: { fields: {} } }), 400)).error, /account is required/);
  assert.match((await json<{ error: string }>(await n.api('/api/recipients/a@example.com?account=nope', { method: 'PUT', body: { fields: {} } }), 400)).error, /unknown account/);
});

test('listing: filters by domain, field, list, created range, suppressed; pages with a cursor', async () => {
  for (let i = 0; i < 25; i++) {
    await n.api(`/api/recipients/u${String(i).padStart(2, '0')}@${i % 2 ? 'odd' : 'even'}.example?account=other`, { method: 'PUT', body: { fields: { tier: i < 5 ? 'gold' : 'basic' } } });
  }
  await n.db.exclusive(async () => {
    const [rec] = await n.db.getMany('other', ['u03@odd.example']);
    await n.store.commit(n.db.putOps('other', { ...rec!, lists: ['news'] }), { sync: true });
  });
  await n.suppression.add('other', { address: 'u01@odd.example', scope: '*', reason: 'manual' });
  const list = async (q: string): Promise<{ recipients: Entry[]; next: string | null }> => json(await n.api(`/api/recipients?account=other&${q}`), 200);
  assert.equal((await list('domain=ODD.example')).recipients.length, 12);
  assert.deepEqual((await list('field=tier:gold')).recipients.map((r) => r.address), ['u00@even.example', 'u01@odd.example', 'u02@even.example', 'u03@odd.example', 'u04@even.example']);
  assert.deepEqual((await list('list=news')).recipients.map((r) => r.address), ['u03@odd.example']);
  assert.deepEqual((await list('suppressed=true')).recipients.map((r) => r.address), ['u01@odd.example']);
  assert.equal((await list('suppressed=false')).recipients.length, 24);
  assert.equal((await list('createdFrom=2999-01-01')).recipients.length, 0);
  assert.equal((await list(`createdTo=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).recipients.length, 25);
  assert.equal((await list('lastSentFrom=2000-01-01')).recipients.length, 0, 'nothing sent yet');
  assert.equal((await n.api('/api/recipients?account=other&createdFrom=yesterday')).status, 400);
  assert.equal((await n.api('/api/recipients?account=other&field=bad name:x')).status, 400);
  // Paging: every entry once, in order.
  const seen: string[] = [];
  let after: string | null = null;
  do {
    const page: { recipients: Entry[]; next: string | null } = await list(`limit=7${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    seen.push(...page.recipients.map((r) => r.address));
    after = page.next;
  } while (after);
  assert.equal(seen.length, 25);
  assert.equal(new Set(seen).size, 25);
});

test("an account key sees and changes its own account only; another account's is 403", async () => {
  await n.api('/api/recipients/mine@example.com?account=acme', { method: 'PUT', body: { fields: { a: '1' } } });
  await n.api('/api/recipients/theirs@example.com?account=other', { method: 'PUT', body: { fields: { b: '2' } } });
  const acme = 'key-acme';
  assert.equal((await n.api('/api/recipients/mine@example.com', { key: acme })).status, 200, 'own account implied');
  const listed = await json<{ recipients: Entry[] }>(await n.api('/api/recipients?limit=1000', { key: acme }), 200);
  assert.ok(listed.recipients.length > 0 && listed.recipients.every((r) => r.account === 'acme'));
  for (const [method, route, body] of [
    ['GET', '/api/recipients?account=other', undefined],
    ['GET', '/api/recipients/theirs@example.com?account=other', undefined],
    ['PATCH', '/api/recipients/theirs@example.com?account=other', { fields: { b: 'x' } }],
    ['PUT', '/api/recipients/theirs@example.com?account=other', { fields: {} }],
    ['DELETE', '/api/recipients/theirs@example.com?account=other', undefined],
    ['GET', '/api/recipients/export?account=other', undefined],
  ] as const) {
    assert.equal((await n.api(route, { method, key: acme, body })).status, 403, `${method} ${route}`);
  }
  assert.equal((await n.api('/api/recipients/import?account=other', { method: 'POST', key: acme, raw: 'address\nx@example.com\n', contentType: 'text/csv' })).status, 403);
  // Without naming it, the other account's address is simply not in this account.
  assert.equal((await n.api('/api/recipients/theirs@example.com', { key: acme })).status, 404);
  const theirs = await json<Entry>(await n.api('/api/recipients/theirs@example.com?account=other'), 200);
  assert.deepEqual(theirs.fields, { b: '2' }, 'unchanged');
  assert.ok(!(await (await n.api('/api/recipients/export', { key: acme })).text()).includes('theirs@'));
});
