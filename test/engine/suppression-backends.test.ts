/*
 * One suite, both backends of the suppression list (engine/suppression.ts):
 * LevelDB in a temporary folder, PostgreSQL in a cluster this file starts
 * (test/helpers/postgres.ts), a fresh migrated database per test. Then what
 * only a database that can go away has: PostgreSQL stopped → the check throws
 * a temporary error, the rewrap gives the message back, nothing reaches the
 * delivery queue; writes made meanwhile are parked and reach the other nodes
 * when it returns.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { parseConfig } from '../../common/config.js';
import { DeadLetter } from '../../common/dead-letter.js';
import { DurableQueue } from '../../common/durable-queue.js';
import { PostinoError } from '../../common/errors.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import { createLogger } from '../../common/log.js';
import { migrate } from '../../common/storage/postgres/migrations.js';
import { type PgPool } from '../../common/storage/postgres/pool.js';
import { Store } from '../../common/store.js';
import type { DeliveryMeta } from '../../engine/delivery/delivery-record.js';
import { EventLog } from '../../engine/events/event-log.js';
import { CopyIndex } from '../../engine/feedback/copy-index.js';
import { LevelRecipientDb } from '../../engine/recipient-db.js';
import { resolveRewrapSettings } from '../../engine/rewrap/settings.js';
import { RewrapWorker } from '../../engine/rewrap/worker.js';
import { PgSuppressionList } from '../../engine/suppression-postgres.js';
import { importSuppressionCsv } from '../../engine/suppression-routes.js';
import { LevelSuppressionList, type SuppressionList } from '../../engine/suppression.js';
import { sink, startDeliveryHarness } from '../helpers/delivery-harness.js';
import { startFeedbackNode } from '../helpers/feedback.js';
import { readSink } from '../helpers/sink-reader.js';
import { clusterForFile, shortPool as pool } from '../helpers/postgres.js';
import { tempDir } from '../helpers/postino.js';

const pgFile = clusterForFile();
const pgSkip = pgFile.skip;

interface Backend {
  store: Store;
  list: SuppressionList;
  close(): Promise<void>;
}

const silent = createLogger('test', 'silent');

async function pgBackend(url?: string): Promise<Backend & { pool: PgPool; list: PgSuppressionList; url: string }> {
  const dbUrl = url ?? (await pgFile.cluster().newDatabase());
  const p = pool(dbUrl);
  if (!url) await migrate(p);
  const dir = tempDir('sup-pg');
  const store = await Store.open(dir);
  const list = new PgSuppressionList(p, store, silent);
  return {
    store,
    list,
    pool: p,
    url: dbUrl,
    async close() {
      await list.close();
      await p.end();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const BACKENDS: Array<{ name: string; skip: string | undefined; open(): Promise<Backend> }> = [
  {
    name: 'LevelDB',
    skip: undefined,
    async open() {
      const dir = tempDir('sup-level');
      const store = await Store.open(dir);
      return {
        store,
        list: new LevelSuppressionList(store),
        async close() {
          await store.close();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  { name: 'PostgreSQL', skip: pgSkip, open: () => pgBackend() },
];

async function collect<T>(it: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function withBackend(open: () => Promise<Backend>, fn: (b: Backend) => Promise<void>): Promise<void> {
  const b = await open();
  try {
    await fn(b);
  } finally {
    await b.close();
  }
}

for (const backend of BACKENDS) {
  describe(`suppression list on ${backend.name}`, { skip: backend.skip }, () => {
    const run = (fn: (b: Backend) => Promise<void>) => () => withBackend(backend.open, fn);

    test('domain compared case-insensitively, local part exactly; transactional skips unsubscribes only', run(async ({ list: s }) => {
      await s.add('acme', { address: 'Ada@Example.COM', scope: '*', reason: 'hard-bounce' });
      await s.add('acme', { address: 'bob@example.com', scope: 'list:news', reason: 'unsubscribe' });
      await s.add('acme', { address: 'cy@example.com', scope: '*', reason: 'unsubscribe' });
      assert.equal((await s.check('acme', 'Ada@example.com', { stream: 'bulk' }))?.reason, 'hard-bounce');
      assert.equal(await s.check('acme', 'ada@example.com', { stream: 'bulk' }), undefined, 'local part is case-sensitive');
      assert.equal((await s.check('acme', 'Ada@EXAMPLE.com', { stream: 'transactional' }))?.reason, 'hard-bounce', 'hard bounces stop transactional mail too');
      assert.equal((await s.check('acme', 'bob@example.com', { stream: 'bulk', list: 'news' }))?.scope, 'list:news');
      assert.equal(await s.check('acme', 'bob@example.com', { stream: 'bulk', list: 'offers' }), undefined, 'another list is not affected');
      assert.equal(await s.check('acme', 'bob@example.com', { stream: 'transactional', list: 'news' }), undefined);
      assert.equal(await s.check('acme', 'cy@example.com', { stream: 'transactional' }), undefined);
    }));

    test('add, get, remove: an entry keeps why and when; adding again replaces it; remove says whether it was there', run(async ({ list: s }) => {
      await s.add('acme', { address: 'a@Example.com', scope: '*', reason: 'complaint', detail: 'abuse', queueId: 'Q1', at: '2026-11-01T10:00:00.000Z' });
      assert.deepEqual(await s.get('acme', 'a@EXAMPLE.COM'), { address: 'a@example.com', scope: '*', reason: 'complaint', detail: 'abuse', queueId: 'Q1', at: '2026-11-01T10:00:00.000Z' });
      await s.add('acme', { address: 'a@example.com', scope: '*', reason: 'manual', at: '2026-11-02T10:00:00.000Z' });
      assert.deepEqual(await s.get('acme', 'a@example.com'), { address: 'a@example.com', scope: '*', reason: 'manual', at: '2026-11-02T10:00:00.000Z' });
      assert.equal(await s.get('acme', 'a@example.com', 'list:news'), undefined, 'scopes are apart');
      assert.equal(await s.remove('acme', 'a@EXAMPLE.com'), true);
      assert.equal(await s.remove('acme', 'a@example.com'), false);
      assert.equal(await s.get('acme', 'a@example.com'), undefined);
      assert.equal(await s.check('acme', 'a@example.com', { stream: 'bulk' }), undefined);
    }));

    test('addOps: committed with the caller\'s batch, the entries are there after the commit', run(async ({ store, list: s }) => {
      const ops = await s.addOps('acme', [
        { address: 'x@example.com', scope: '*', reason: 'hard-bounce' },
        { address: 'y@example.com', scope: 'list:news', reason: 'unsubscribe' },
      ]);
      await store.commit([...ops, { type: 'put', key: 'test!event', value: Buffer.from('1') }], { sync: true });
      assert.equal((await s.get('acme', 'x@example.com'))?.reason, 'hard-bounce');
      assert.equal((await s.get('acme', 'y@example.com', 'list:news'))?.reason, 'unsubscribe');
    }));

    test('checkMany and suppressedMany: 1,200 recipients answered in the order asked, list scopes and policy per recipient', run(async ({ store, list: s }) => {
      const entries = Array.from({ length: 600 }, (_, i) => ({ address: `u${i * 2}@example.com`, scope: i % 3 === 0 ? 'list:news' : '*', reason: (i % 5 === 0 ? 'unsubscribe' : 'hard-bounce') as 'unsubscribe' | 'hard-bounce' }));
      await s.add('acme', entries[0]!); // one through `add`, the rest in a batch
      await store.commit(await s.addOps('acme', entries.slice(1)), { sync: true });
      const addresses = Array.from({ length: 1200 }, (_, i) => `u${i}@example.com`);
      const bulk = await s.checkMany('acme', addresses.map((address) => ({ address, list: 'news', stream: 'bulk' as const })));
      const tx = await s.checkMany('acme', addresses.map((address) => ({ address, stream: 'transactional' as const })));
      const wide = await s.suppressedMany('acme', addresses);
      for (let i = 0; i < 1200; i++) {
        const e = i % 2 === 0 ? entries[i / 2]! : undefined;
        assert.equal(bulk[i]?.address, e?.address, `bulk ${i}`);
        const txStops = e && e.scope === '*' && e.reason !== 'unsubscribe';
        assert.equal(tx[i]?.address, txStops ? e.address : undefined, `transactional ${i}`);
        assert.equal(wide[i], Boolean(e && e.scope === '*'), `suppressedMany ${i}`);
      }
      assert.deepEqual(await s.checkMany('acme', []), []);
    }));

    test('accounts are apart: another account\'s entry neither stops, lists, nor is removed', run(async ({ list: s }) => {
      await s.add('a', { address: 'same@example.com', scope: '*', reason: 'complaint' });
      await s.add('b', { address: 'other@example.com', scope: '*', reason: 'manual' });
      assert.equal(await s.check('b', 'same@example.com', { stream: 'bulk' }), undefined);
      assert.deepEqual(await s.suppressedMany('b', ['same@example.com']), [false]);
      assert.equal(await s.remove('b', 'same@example.com'), false);
      assert.equal((await s.check('a', 'same@example.com', { stream: 'bulk' }))?.reason, 'complaint');
      assert.deepEqual((await collect(s.entries({ account: 'b' }))).map((e) => `${e.account}:${e.address}`), ['b:other@example.com']);
      assert.deepEqual((await collect(s.entries())).map((e) => `${e.account}:${e.address}`), ['a:same@example.com', 'b:other@example.com']);
    }));

    test('listing: 2,500 entries in key order, resumed from any cursor without a gap or a repeat', run(async ({ store, list: s }) => {
      const n = 2500;
      for (const account of ['acme', 'zeta']) {
        const ops = await s.addOps(account, Array.from({ length: n }, (_, i) => ({ address: `user${String(i).padStart(5, '0')}@example.com`, scope: '*', reason: 'manual' as const })));
        await store.commit(ops, { sync: true });
      }
      const all = await collect(s.entries({ account: 'acme' }));
      assert.equal(all.length, n);
      assert.deepEqual(all.map((e) => e.address), [...all.map((e) => e.address)].sort());
      const resumed = await collect(s.entries({ account: 'acme', after: all[1234]!.cursor }));
      assert.equal(resumed.length, n - 1235);
      assert.equal(resumed[0]!.address, all[1235]!.address);
      const everyone = await collect(s.entries());
      assert.equal(everyone.length, 2 * n);
      const fromSecond = await collect(s.entries({ after: everyone[n - 1]!.cursor }));
      assert.equal(fromSecond[0]!.account, 'zeta');
      assert.equal(fromSecond.length, n);
    }));

    test('import: rows in batches, a duplicate row replaces, bad rows named by line', run(async ({ store, list: s }) => {
      const rows = ['email,scope,detail', 'a@example.com', 'b@example.com,list:news,crm', 'not-an-address', 'a@EXAMPLE.com,*,again', ...Array.from({ length: 12_000 }, (_, i) => `bulk${i}@example.com`)];
      const r = await importSuppressionCsv({ store, suppression: s }, 'acme', 'unsubscribe', Readable.from([rows.join('\n') + '\n']));
      assert.equal(r.imported, 12_003);
      assert.deepEqual(r.rejected, [{ line: 4, reason: 'not-an-address: not an address (local@domain)' }]);
      assert.equal((await s.get('acme', 'a@example.com'))?.detail, 'again', 'the later row wins');
      assert.equal((await s.get('acme', 'b@example.com', 'list:news'))?.detail, 'crm');
      assert.equal((await s.check('acme', 'bulk11999@example.com', { stream: 'bulk' }))?.reason, 'unsubscribe');
      assert.equal((await collect(s.entries({ account: 'acme' }))).length, 12_002);
    }));
  });
}

describe('PostgreSQL unavailable', { skip: pgSkip }, () => {
  test('a check throws a temporary error (451 4.3.0); parked writes reach the other nodes when it returns', async () => {
    const a = await pgBackend();
    const b = await pgBackend(a.url); // a second node on the same database
    try {
      await a.list.add('acme', { address: 'known@example.com', scope: '*', reason: 'complaint' });
      assert.equal((await b.list.check('acme', 'known@example.com', { stream: 'bulk' }))?.reason, 'complaint', 'written on node A, seen on node B');
      await pgFile.cluster().stop();
      const err = await a.list.check('acme', 'known@example.com', { stream: 'bulk' }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof PostinoError, `a PostinoError, not ${String(err)}`);
      assert.equal(err.code, 'SHARED_STATE_UNAVAILABLE');
      assert.equal(err.smtpCode, 451);
      assert.equal(err.enhanced, '4.3.0');
      await assert.rejects(a.list.checkMany('acme', [{ address: 'x@example.com', stream: 'bulk' }]), (e: unknown) => e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE');
      await assert.rejects(a.list.get('acme', 'known@example.com'), (e: unknown) => e instanceof PostinoError && e.httpStatus === 503);
      // A hard bounce on node A while the database is away: parked with its event in A's LevelDB.
      const ops = await a.list.addOps('acme', [{ address: 'bounced@example.com', scope: '*', reason: 'hard-bounce' }]);
      assert.equal(ops.length, 1);
      await a.store.commit(ops, { sync: true });
      await pgFile.cluster().start();
      assert.equal((await a.list.check('acme', 'bounced@example.com', { stream: 'bulk' }))?.reason, 'hard-bounce', 'node A reads its parked entry (written first)');
      assert.equal((await b.list.check('acme', 'bounced@example.com', { stream: 'bulk' }))?.reason, 'hard-bounce', 'node B sees it once written');
      assert.deepEqual(await a.store.db.keys({ gte: 'so!', lt: 'so!\uffff' }).all(), [], 'nothing left parked');
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await b.close();
      await a.close();
    }
  });

  test('rewrap with PostgreSQL stopped: the message goes back to the intake queue, no copy is made; when it returns, the suppressed recipient gets none', async () => {
    const b = await pgBackend();
    const dir = tempDir('sup-rewrap');
    const store = await Store.open(path.join(dir, 'hosted'));
    try {
      const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
      const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
      const events = await EventLog.open(store);
      const config = parseConfig({ accounts: [{ id: 'default' }] });
      const worker = new RewrapWorker({ intake, delivery, events, services: { suppression: b.list, recipients: new LevelRecipientDb(store), copies: new CopyIndex(store) }, settings: resolveRewrapSettings(config, dir), log: silent });
      // The dead letter's clock runs 10 s behind, so a message it gives back is due again at once.
      const dead = new DeadLetter<IntakeMeta>({ queue: intake, limit: { maxAttempts: 2, backoffMs: [1000] }, countLeases: true, failedEvents: () => ({ ops: [], settle() {}, abandon() {} }), log: silent, clock: () => Date.now() - 10_000 });
      await b.list.add('default', { address: 'gone@example.com', scope: '*', reason: 'hard-bounce' });
      await intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'shop@example.org', rcptTo: ['a@example.com', 'gone@example.com'], clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body: Buffer.from('From: shop@example.org\r\nTo: a@example.com\r\nSubject: x\r\n\r\nhello\r\n') });
      await pgFile.cluster().stop();
      // More attempts than engine.maxAttempts (2 here): an outage never moves the message to failed.
      for (let i = 0; i < 3; i++) {
        const [rec] = await intake.lease(1, 60_000);
        assert.ok(rec, `attempt ${i}: the message is back in the queue`);
        const err = await worker.handle(rec).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof PostinoError && err.code === 'SHARED_STATE_UNAVAILABLE', `attempt ${i}: ${String(err)}`);
        assert.equal(await dead.crashed(rec, err), 'deferred');
        assert.equal(delivery.size, 0, 'nothing was passed to delivery');
      }
      assert.equal(intake.size, 1);
      assert.equal(intake.failedCount, 0);
      await pgFile.cluster().start();
      const [rec] = await intake.lease(1, 60_000);
      await worker.handle(rec!);
      const copies = await collect(delivery.records());
      assert.deepEqual(copies.map((c) => c.meta.recipient), ['a@example.com']);
      assert.equal(intake.size, 0);
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
      await b.close();
    }
  });

  test('a one-click unsubscribe while PostgreSQL is stopped is answered 200, recorded, and reaches the shared list when it returns', async () => {
    const url = await pgFile.cluster().newDatabase();
    const p = pool(url);
    await migrate(p);
    const node = await startFeedbackNode({}, (store) => new PgSuppressionList(p, store, silent));
    const other = await pgBackend(url);
    try {
      const c = await node.copy('ada@example.com', { list: 'news' });
      await pgFile.cluster().stop();
      const res = await fetch(c.unsubscribeUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      assert.equal(res.status, 200, 'the person is not told to try again');
      assert.equal((await node.feed()).filter((e) => e.type === 'unsubscribed' && e.recipient === 'ada@example.com').length, 1);
      await pgFile.cluster().start();
      await (node.suppression as PgSuppressionList).flushParked();
      assert.equal((await other.list.check('acme', 'ada@example.com', { stream: 'bulk', list: 'news' }))?.reason, 'unsubscribe', 'on every node once written');
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await other.close();
      await node.close();
      await p.end();
    }
  });

  test('delivery with PostgreSQL stopped: no copy is sent while its check cannot be made; when it returns the suppressed one is not', async () => {
    const url = await pgFile.cluster().newDatabase();
    const p = pool(url);
    await migrate(p);
    const out = await sink();
    const h = await startDeliveryHarness({ delivery: { relays: [`smtp://127.0.0.1:${out.port}`] } }, tempDir('sup-delivery'), (store) => new PgSuppressionList(p, store, silent));
    try {
      await h.suppression.add('default', { address: 'gone@example.com', scope: '*', reason: 'complaint' });
      await pgFile.cluster().stop();
      await h.send('gone@example.com');
      await h.send('ok@example.com');
      await new Promise((r) => setTimeout(r, 2_000));
      assert.equal(readSink(out.dir).length, 0, 'nothing sent unchecked');
      assert.deepEqual((await h.all()).map((e) => e.type), [], 'no outcome recorded: both wait');
      assert.equal(h.queue.size, 2);
      await pgFile.cluster().start();
      const evs = await h.waitFor((e) => e.length >= 2, 30_000);
      assert.deepEqual(evs.map((e) => `${e.type}:${e.recipient}`).sort(), ['delivered:ok@example.com', 'suppressed:gone@example.com']);
      assert.deepEqual(readSink(out.dir).flatMap((m) => m.rcptTo), ['ok@example.com']);
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await h.close();
      await out.close();
      await p.end();
    }
  });
});
