/*
 * The recipient index (engine/events/recipient-index.ts) on a real LevelDB,
 * read over real HTTP: written in the batch of its events (a failed batch
 * leaves neither), `GET /api/events?recipient=` answers exactly what a filter
 * over the whole feed answers (many recipients, any case, with after/limit/
 * type, per account, an account key seeing its own only), the one-time
 * backfill indexes older events and resumes from its cursor, and the eraser
 * moves the entries of an erased recipient to its pseudonym.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { ApiKeys, newAccountKey } from '../../../common/api-keys.js';
import { parseConfig } from '../../../common/config.js';
import type { EventInput, PostinoEvent } from '../../../common/events.js';
import { listenHttp } from '../../../common/http-server.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { DeliveryPause } from '../../../engine/delivery/delivery-pause.js';
import { eraseRecipientEvents } from '../../../engine/events/erase-recipient.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { indexEvents, startEventReaders } from '../../../engine/events/events-stage.js';
import { RecipientIndex, recipientIndexKey, recipientIndexOf } from '../../../engine/events/recipient-index.js';
import { createHostedApi } from '../../../engine/http-api.js';
import { tempDir } from '../../helpers/postino.js';

const NODE_KEY = 'node-key-for-the-recipient-index-test-0123';
const log = createLogger('test', 'silent');
const TYPES = ['accepted', 'delivered', 'deferred', 'bounced', 'opened'] as const;

/** Deterministic pseudo-random numbers (a failing case can be replayed). */
function rng(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

/** 150 recipients, written in mixed case; two accounts share some of them. */
function someEvents(n: number, rand: () => number): EventInput[] {
  return Array.from({ length: n }, (_, i): EventInput => {
    const r = Math.floor(rand() * 150);
    const local = rand() < 0.2 ? `User${r}` : `user${r}`;
    return { type: TYPES[i % TYPES.length]!, account: rand() < 0.3 ? 'shop' : 'crm', recipient: rand() < 0.05 ? undefined : `${local}@D${r % 7}.example`, queueId: `Q${i}` } as EventInput;
  });
}

async function mrKeys(store: Store): Promise<string[]> {
  return store.db.keys({ gte: 'mr!', lt: 'mr"' }).all();
}

test('index entries commit with their events; the recipient filter answers what a scan of the feed answers', { timeout: 60_000 }, async () => {
  const shopKey = await newAccountKey();
  const config = parseConfig({ accounts: [{ id: 'crm' }, { id: 'shop', apiKeys: [shopKey.entry] }] });
  const store = await Store.open(tempDir('recipient-index'));
  const events = await EventLog.open(store);
  const indexes = indexEvents(store, events);
  const keys = new ApiKeys(NODE_KEY, config.accounts);
  const api = createHostedApi((t) => keys.principal(t), log);
  const readers = await startEventReaders({ store, events, indexes, config: config.events, accounts: config.accounts, env: {}, api, killSwitch: await DeliveryPause.open(store), registry: new Registry(), log });
  const base = `http://127.0.0.1:${await listenHttp(api, { host: '127.0.0.1', port: 0, what: 'test', log })}`;
  try {
    await indexes.recipients.backfill();
    assert.ok(recipientIndexOf(events), 'an empty log needs no backfill: the index is in use at once');
    const rand = rng(42);
    const all = someEvents(6_000, rand);
    for (let i = 0; i < all.length; i += 200) {
      const batch = all.slice(i, i + 200);
      if ((i / 200) % 7 === 3) {
        // A failed batch: neither its events nor their index entries exist.
        await assert.rejects(events.commitWith(batch, async () => { throw new Error('disk full (test)'); }), /disk full/);
      }
      await events.commitWith(batch, (ops) => store.commit(ops, { sync: false }));
    }
    const feed: PostinoEvent[] = [];
    for await (const e of events.scan(0)) feed.push(e);
    assert.equal(feed.length, 6_000);
    // Every visible event has its entry, and there is no entry without its event; no address in a key.
    const expected = feed.filter((e) => e.recipient).map((e) => recipientIndexKey(e.account, e.recipient!, e.seq)).sort();
    const actual = await mrKeys(store);
    assert.deepEqual(actual, expected);
    assert.ok(actual.every((k) => !k.includes('@') && !k.toLowerCase().includes('example')), 'keys hold a digest, never the address');

    const get = async (route: string, key = NODE_KEY): Promise<{ status: number; events: PostinoEvent[]; text: string }> => {
      const r = await fetch(base + route, { headers: { authorization: `Bearer ${key}` } });
      const text = await r.text();
      return { status: r.status, text, events: r.status === 200 ? text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as PostinoEvent) : [] };
    };
    const seqs = (es: PostinoEvent[]): number[] => es.map((e) => e.seq);
    for (let k = 0; k < 40; k++) {
      const r = Math.floor(rand() * 160); // some of 150..159 were never written to
      const asked = `${rand() < 0.5 ? 'USER' : 'user'}${r}@d${r % 7}.EXAMPLE`;
      const want = feed.filter((e) => e.recipient?.toLowerCase() === asked.toLowerCase());
      const got = await get(`/api/events?recipient=${encodeURIComponent(asked)}&limit=1000000`);
      assert.equal(got.status, 200, got.text);
      assert.deepEqual(seqs(got.events), seqs(want), `recipient ${asked}`);
      // With the other filters: an account, a type, and paging by after/limit.
      const account = k % 2 ? 'shop' : 'crm';
      const type = TYPES[k % TYPES.length]!;
      const narrowed = await get(`/api/events?recipient=${encodeURIComponent(asked)}&account=${account}&type=${type}&limit=1000000`);
      assert.deepEqual(seqs(narrowed.events), seqs(want.filter((e) => e.account === account && e.type === type)), `${asked} ${account} ${type}`);
      const paged: PostinoEvent[] = [];
      let after = 0;
      for (;;) {
        const p = await get(`/api/events?recipient=${encodeURIComponent(asked)}&after=${after}&limit=3`);
        paged.push(...p.events);
        if (p.events.length < 3) break;
        after = p.events[p.events.length - 1]!.seq;
      }
      assert.deepEqual(seqs(paged), seqs(want), `${asked} in pages of 3`);
      // An account key sees its own account's events only, and naming another is 403.
      const mine = await get(`/api/events?recipient=${encodeURIComponent(asked)}&limit=1000000`, shopKey.token);
      assert.deepEqual(seqs(mine.events), seqs(want.filter((e) => e.account === 'shop')));
      if (k === 0) assert.equal((await get(`/api/events?recipient=${encodeURIComponent(asked)}&account=crm`, shopKey.token)).status, 403);
    }
    // The answers above came through the index, not a scan: an entry taken away (white box) is an event the filter no longer finds.
    const victim = feed.find((e) => e.recipient)!;
    await store.commit([{ type: 'del', key: recipientIndexKey(victim.account, victim.recipient!, victim.seq) }], { sync: false });
    const without = await get(`/api/events?recipient=${encodeURIComponent(victim.recipient!)}&limit=1000000`);
    assert.ok(!seqs(without.events).includes(victim.seq));
    assert.ok((await get(`/api/events?limit=1000000`)).events.some((e) => e.seq === victim.seq), 'the event itself is still in the feed');
  } finally {
    await readers.close();
    await api.close();
    await store.close();
  }
});

test('the backfill indexes events written before the index, in batches, and resumes from its cursor', { timeout: 60_000 }, async () => {
  const dir = tempDir('recipient-backfill');
  let store = await Store.open(dir);
  let events = await EventLog.open(store); // no index: as written by the previous version
  const rand = rng(7);
  for (let i = 0; i < 3; i++) await events.append(someEvents(1_000, rand));
  assert.equal((await mrKeys(store)).length, 0);
  await store.close();

  store = await Store.open(dir);
  events = await EventLog.open(store);
  let index = new RecipientIndex(store, events);
  await events.append(someEvents(500, rand)); // written after the upgrade: indexed as written
  assert.equal(recipientIndexOf(events), undefined, 'not in use before the backfill');
  // A shutdown stops it between batches; the next start finishes it.
  const stopped = index.backfill();
  await index.stop();
  const done = await stopped;
  assert.ok(done < 3_000);
  assert.equal(recipientIndexOf(events), undefined, 'still not in use: incomplete');
  await store.close();
  store = await Store.open(dir);
  events = await EventLog.open(store);
  index = new RecipientIndex(store, events);
  assert.equal(await index.backfill(), 3_000 - done);
  assert.equal(recipientIndexOf(events), index);
  const feed: PostinoEvent[] = [];
  for await (const e of events.scan(0)) feed.push(e);
  const expected = feed.filter((e) => e.recipient).map((e) => recipientIndexKey(e.account, e.recipient!, e.seq)).sort();
  assert.deepEqual(await mrKeys(store), expected);
  // A crash half-way: the cursor says 1,200 done; the entries past it are missing.
  const missing = expected.filter((k) => Number(k.slice(-16)) > 1_200 && Number(k.slice(-16)) <= 3_000);
  await store.commit([...missing.map((key) => ({ type: 'del' as const, key })), { type: 'put', key: 'mr-backfill!cursor', value: Buffer.from(JSON.stringify({ upTo: 3_000, after: 1_200 })) }], { sync: true });
  await store.close();
  store = await Store.open(dir);
  events = await EventLog.open(store);
  index = new RecipientIndex(store, events);
  assert.equal(await index.backfill(), 1_800, 'resumes after 1,200');
  assert.deepEqual(await mrKeys(store), expected);
  assert.equal(await new RecipientIndex(store, await EventLog.open(store)).backfill(), 0, 'done once');
  await store.close();
});

test('erasing a recipient moves its entries to the pseudonym; the other account and later events keep theirs', { timeout: 30_000 }, async () => {
  const store = await Store.open(tempDir('recipient-erase-index'));
  const events = await EventLog.open(store);
  const index = new RecipientIndex(store, events);
  await index.backfill();
  const ada = (account: string, i: number, recipient = 'Ada@Example.com'): EventInput => ({ type: 'delivered', account, recipient, queueId: `Q${i}`, reason: `sent to ${recipient}` });
  const before = await events.append([ada('crm', 1), ada('shop', 2), ada('crm', 3, 'bob@example.com'), ada('crm', 4, 'ada@example.com')]);
  const deleted = await events.append([{ type: 'recipient.deleted', account: 'crm', recipient: 'pseudo-1' }]);
  const later = await events.append([ada('crm', 5)]); // late feedback after the deletion: not erased
  // A stray entry (the backfill racing the eraser) under the address, below the deletion.
  const stray = recipientIndexKey('crm', 'ada@example.com', 0) .slice(0, -16) + '0000000000000003';
  await store.commit([{ type: 'put', key: stray, value: Buffer.alloc(0) }], { sync: false });
  const job = { id: 'j1', account: 'crm', address: 'ada@example.com', pseudonym: 'pseudo-1', upTo: deleted[0]!.seq, after: 0 };
  await store.commit([{ type: 'put', key: 'rj!j1', value: Buffer.from(JSON.stringify(job)) }], { sync: false });
  assert.deepEqual(await eraseRecipientEvents(store, events, job, () => false), { done: true, rewritten: 2 });
  const read = async (account: string | undefined, address: string): Promise<number[]> => {
    const out: number[] = [];
    for await (const e of index.read(account, address, { after: 0, before: Number.MAX_SAFE_INTEGER, reverse: false })) out.push(e.seq);
    return out;
  };
  assert.deepEqual(await read('crm', 'ada@example.com'), [later[0]!.seq], 'only the event after the deletion');
  assert.deepEqual(await read('shop', 'ada@example.com'), [before[1]!.seq], 'the other account keeps its own');
  assert.deepEqual(await read(undefined, 'ADA@example.com'), [before[1]!.seq, later[0]!.seq], 'all accounts, merged by seq');
  assert.deepEqual(await read('crm', 'pseudo-1'), [before[0]!.seq, before[3]!.seq, deleted[0]!.seq], 'the erased events are found by the pseudonym, as a scan finds them');
  assert.deepEqual(await read('crm', 'bob@example.com'), [before[2]!.seq]);
  const keys = await mrKeys(store);
  const adaCrm = recipientIndexKey('crm', 'ada@example.com', 0).slice(0, -16);
  assert.deepEqual(keys.filter((k) => k.startsWith(adaCrm)), [recipientIndexKey('crm', 'ada@example.com', later[0]!.seq)], 'no entry of the address below the deletion is left, the stray one neither');
  await store.close();
});
