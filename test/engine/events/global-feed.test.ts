/*
 * The global event feed (issue #14) on a real PostgreSQL cluster of the
 * test's own: two nodes, each with its own LevelDB event log, ship to one
 * feed while a reader pages through it the way a DataExporter client does
 * (read up to the top, remember the last seq, resume after it). The shippers
 * are made slow at the worst moment (after the rows, before COMMIT, holding
 * their seqs) so the classic sequence gap would show: a reader that resumed
 * past a seq committed later. It must see seqs 1, 2, 3, … with no hole, every
 * event of both nodes exactly once. Then PostgreSQL is stopped: the nodes go
 * on writing locally, and the feed catches up when it returns.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PostinoEvent } from '../../../common/events.js';
import { createLogger } from '../../../common/log.js';
import { migrate } from '../../../common/storage/postgres/migrations.js';
import { openPool, type PgPool } from '../../../common/storage/postgres/pool.js';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { EventShipper } from '../../../engine/events/event-shipper.js';
import { PgFeed } from '../../../engine/events/pg-feed.js';
import { sleep } from '../../helpers/forwarder.js';
import { clusterForFile } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/postino.js';

const pgFile = clusterForFile();
const pgSkip = pgFile.skip;

const silent = createLogger('test', 'silent');

interface Node {
  name: string;
  store: Store;
  events: EventLog;
  shipper: EventShipper;
  pool: PgPool;
}

async function node(name: string, url: string, slow: () => number): Promise<Node> {
  const store = await Store.open(tempDir(`feed-${name}`));
  const events = await EventLog.open(store);
  const pool = openPool({ url, poolSize: 2, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
  const shipper = new EventShipper({ pool, events, node: name, log: silent, beforeCommit: async () => void (await sleep(slow())) });
  shipper.start();
  return { name, store, events, shipper, pool };
}

/** A DataExporter client: pages of `limit` up to the top, resuming after the last seq it saw. */
async function readPage(feed: PgFeed, after: number, limit: number): Promise<PostinoEvent[]> {
  const top = await feed.top();
  const out: PostinoEvent[] = [];
  for await (const e of feed.scan(after, top)) {
    out.push(e);
    if (out.length >= limit) break;
  }
  return out;
}

test('two nodes ship to one feed while a reader pages through it: seqs 1, 2, 3, … without a hole, every event once, even when a shipper is slow to commit', { timeout: 120_000 }, async (t) => {
  if (pgSkip) return t.skip(pgSkip);
  const url = await pgFile.cluster().newDatabase();
  const admin = openPool({ url, poolSize: 2, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
  await migrate(admin);
  // Node a sometimes holds its seqs 150 ms before COMMIT: b's shipper must wait for it, not pass it.
  const a = await node('a', url, () => (Math.random() < 0.3 ? 150 : 0));
  const b = await node('b', url, () => 0);
  const feed = new PgFeed(admin);
  const PER_NODE = 1_500;
  try {
    const writing = (async () => {
      for (let i = 0; i < PER_NODE; ) {
        for (const n of [a, b]) {
          const size = 1 + Math.floor(Math.random() * 20);
          await n.events.append(Array.from({ length: size }, (_, k) => ({ type: 'accepted' as const, account: n.name === 'a' ? 'shop' : 'crm', queueId: `${n.name}-${i + k}` })));
        }
        i += 20;
        if (i % 200 === 0) await sleep(20);
      }
    })();
    const seen: PostinoEvent[] = [];
    let cursor = 0;
    let pages = 0;
    let done = false;
    void writing.then(() => (done = true));
    // The reader keeps pace with the writers, in small pages, until everything written is in the feed.
    for (let i = 0; i < 20_000; i++) {
      const page = await readPage(feed, cursor, 50);
      pages++;
      for (const e of page) {
        assert.equal(e.seq, cursor + 1, `after seq ${cursor} the next one the reader sees is ${e.seq}: a hole`);
        cursor = e.seq;
        seen.push(e);
      }
      if (done && page.length === 0) {
        await Promise.all([a.shipper.kick(), b.shipper.kick()]);
        if ((await readPage(feed, cursor, 1)).length === 0 && a.shipper.cursor === a.events.watermark && b.shipper.cursor === b.events.watermark) break;
      }
      if (page.length === 0) await sleep(5);
    }
    await writing;
    const written = a.events.watermark + b.events.watermark;
    const keys = seen.map((e) => `${(e as PostinoEvent & { node: string }).node}:${(e as PostinoEvent & { nodeSeq: number }).nodeSeq}`);
    console.log(`# global feed: ${a.events.watermark} + ${b.events.watermark} events from two nodes, read in ${pages} pages: ${seen.length} seen, ${new Set(keys).size} distinct, last seq ${cursor}`);
    assert.equal(seen.length, written, 'every event of both nodes');
    assert.equal(new Set(keys).size, written, 'each once');
    for (const n of [a, b]) {
      const mine = seen.filter((e) => (e as PostinoEvent & { node: string }).node === n.name).map((e) => (e as PostinoEvent & { nodeSeq: number }).nodeSeq);
      assert.deepEqual(mine, Array.from({ length: n.events.watermark }, (_, i) => i + 1), `node ${n.name}'s events in its own order`);
    }
    assert.ok(seen.every((e) => (e.account === 'shop') === ((e as PostinoEvent & { node: string }).node === 'a')));
    // Narrowed to one account in the query: the same events as filtering.
    const shop: PostinoEvent[] = [];
    for await (const e of feed.scan(0, await feed.top(), 'shop')) shop.push(e);
    assert.deepEqual(shop.map((e) => e.seq), seen.filter((e) => e.account === 'shop').map((e) => e.seq));
  } finally {
    for (const n of [a, b]) {
      await n.shipper.stop();
      await n.pool.end();
      await n.store.close();
    }
    await admin.end();
  }
});

test('PostgreSQL stopped: the nodes write on, locally; the feed catches up when it returns, once each', { timeout: 120_000 }, async (t) => {
  if (pgSkip) return t.skip(pgSkip);
  const url = await pgFile.cluster().newDatabase();
  const admin = openPool({ url, poolSize: 2, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
  await migrate(admin);
  const a = await node('a', url, () => 0);
  const feed = new PgFeed(admin);
  try {
    await a.events.append(Array.from({ length: 100 }, (_, i) => ({ type: 'accepted' as const, account: 'shop', queueId: `q${i}` })));
    await a.shipper.kick();
    assert.equal(await feed.top(), 100);
    await pgFile.cluster().stop();
    await a.events.append(Array.from({ length: 250 }, (_, i) => ({ type: 'delivered' as const, account: 'shop', queueId: `q${i}` })));
    await a.shipper.kick(); // fails: PostgreSQL is down; the events stay in the local log
    assert.equal(a.shipper.cursor, 100, 'nothing shipped while PostgreSQL is down');
    assert.equal(a.events.watermark, 350, 'the node kept writing');
    await pgFile.cluster().start();
    const until = Date.now() + 30_000;
    const shipped = (): number | undefined => a.shipper.cursor;
    while (shipped() !== 350 && Date.now() < until) await sleep(200); // the shipper's own retry timer
    assert.equal(shipped(), 350, 'shipped after PostgreSQL returned');
    const all: PostinoEvent[] = [];
    for await (const e of feed.scan(0, await feed.top())) all.push(e);
    assert.deepEqual(all.map((e) => e.seq), Array.from({ length: 350 }, (_, i) => i + 1));
    assert.equal(all.filter((e) => e.type === 'delivered').length, 250);
  } finally {
    await a.shipper.stop();
    await a.pool.end();
    await a.store.close();
    await admin.end();
  }
});
