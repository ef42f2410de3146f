/*
 * One suite, both backends of the recipient database (engine/recipient-db.ts):
 * LevelDB in a temporary folder, PostgreSQL in a cluster this file starts
 * (test/helpers/postgres.ts), a fresh migrated database per test. Then what
 * only a shared database has: two nodes on one database (a PATCH through
 * node A is what node B merges; traffic entries parked on A reach B), and
 * PostgreSQL stopped (the rewrap's lookup throws the temporary error, the
 * message goes back to the intake queue, no copy is made; when it returns
 * the copy carries its merge value).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import { DeadLetter } from '../../../common/dead-letter.js';
import { DurableQueue } from '../../../common/durable-queue.js';
import { PostinoError } from '../../../common/errors.js';
import type { IntakeMeta } from '../../../common/intake-record.js';
import { createLogger } from '../../../common/log.js';
import { migrate } from '../../../common/storage/postgres/migrations.js';
import { Store } from '../../../common/store.js';
import type { DeliveryMeta } from '../../../engine/delivery/delivery-record.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { CopyIndex } from '../../../engine/feedback/copy-index.js';
import { PgRecipientDb } from '../../../engine/recipient-db-postgres.js';
import { LevelRecipientDb, type RecipientDb } from '../../../engine/recipient-db.js';
import { exportCsv } from '../../../engine/recipients/export.js';
import { importRecipients } from '../../../engine/recipients/import.js';
import { Pseudonymizer } from '../../../engine/recipients/pseudonym.js';
import { resolveRewrapSettings } from '../../../engine/rewrap/settings.js';
import { RewrapWorker } from '../../../engine/rewrap/worker.js';
import { LevelSuppressionList } from '../../../engine/suppression.js';
import { clusterForFile, shortPool as pool } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/postino.js';

const pgFile = clusterForFile();
const silent = createLogger('test', 'silent');
const pseudonyms = new Pseudonymizer('p'.repeat(43));

interface Backend {
  store: Store;
  db: RecipientDb;
  close(): Promise<void>;
}

/** A node on PostgreSQL: its own LevelDB (parked entries) and pool; a fresh database unless `url` names one. */
async function pgBackend(url?: string, node = 'node-a'): Promise<Backend & { db: PgRecipientDb; url: string }> {
  const dbUrl = url ?? (await pgFile.cluster().newDatabase());
  const p = pool(dbUrl);
  if (!url) await migrate(p);
  const dir = tempDir('rcpt-pg');
  const store = await Store.open(dir);
  const db = new PgRecipientDb(p, store, node, pseudonyms, silent);
  return {
    store,
    db,
    url: dbUrl,
    async close() {
      await db.close();
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
      const dir = tempDir('rcpt-level');
      const store = await Store.open(dir);
      return {
        store,
        db: new LevelRecipientDb(store, pseudonyms),
        async close() {
          await store.close();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  { name: 'PostgreSQL', skip: pgFile.skip, open: () => pgBackend() },
];

async function collect<T>(it: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const csv = (lines: string[]): Readable => Readable.from([lines.join('\n') + '\n']);

for (const backend of BACKENDS) {
  describe(`recipient database on ${backend.name}`, { skip: backend.skip }, () => {
    const run = (fn: (b: Backend) => Promise<void>) => async () => {
      const b = await backend.open();
      try {
        await fn(b);
      } finally {
        await b.close();
      }
    };

    test('import: batches, bad rows named by line, fields merged into what is there, a second run unchanged', run(async ({ store, db }) => {
      const rows = ['address,first_name,city', 'ada@Example.COM,Ada,Paris', 'bob@example.com,Bob,', 'not-an-address,X,Y', 'cy@example.com,Cy', 'dee@example.com,Dee,Rome', 'ada@example.com,,Lyon'];
      const first = await importRecipients({ store, db, account: 'acme', format: 'csv', batchRows: 2 }, csv(rows));
      assert.deepEqual({ ...first, rejected: undefined }, { rows: 6, created: 3, updated: 1, unchanged: 0, rejectedCount: 2, rejected: undefined });
      assert.deepEqual(first.rejected, [
        { line: 4, reason: 'not-an-address: not an address (local@domain)' },
        { line: 5, reason: '2 columns; the header has 3' },
      ]);
      assert.deepEqual((await db.get('acme', 'ada@example.com'))?.fields, { first_name: 'Ada', city: 'Lyon' }, 'a later row sets only the cells it has');
      assert.deepEqual((await db.get('acme', 'bob@example.com'))?.fields, { first_name: 'Bob' }, 'an empty cell sets nothing');
      const again = await importRecipients({ store, db, account: 'acme', format: 'csv' }, csv(['address,first_name', 'bob@example.com,Bob', 'dee@example.com,Dora']));
      assert.deepEqual([again.created, again.updated, again.unchanged], [0, 1, 1]);
      assert.deepEqual((await db.get('acme', 'dee@example.com'))?.fields, { first_name: 'Dora', city: 'Rome' });
    }));

    test('lookup for traffic: one multi-get, in the order asked, the domain case-folded, unknown ones undefined', run(async ({ store, db }) => {
      await importRecipients({ store, db, account: 'acme', format: 'csv' }, csv(['address,first_name', ...Array.from({ length: 300 }, (_, i) => `u${i}@example.com,N${i}`)]));
      const asked = ['u7@EXAMPLE.com', 'nobody@example.com', 'u299@example.com', 'u0@example.com'];
      const { records, erased } = await db.lookupForTraffic('acme', asked);
      assert.deepEqual(records.map((r) => r?.fields.first_name), ['N7', undefined, 'N299', 'N0']);
      assert.equal(records[0]!.address, 'u7@example.com');
      assert.deepEqual(erased, [false, false, false, false]);
      assert.deepEqual(await db.lookupForTraffic('acme', []), { records: [], erased: [] });
    }));

    test('traffic: a new address and a new list are written with the caller\'s batch; lists accumulate', run(async ({ store, db }) => {
      const at = '2026-11-01T10:00:00.000Z';
      await store.commit(db.trafficOps('acme', { address: 'new@example.com', fields: {}, lists: [], firstSeen: at }, undefined), { sync: true });
      const [rec] = (await db.lookupForTraffic('acme', ['new@example.com'])).records;
      const seen = rec ?? (await db.get('acme', 'new@example.com'))!; // PostgreSQL: parked until written, get writes first
      assert.deepEqual(seen, { address: 'new@example.com', fields: {}, lists: [], firstSeen: at });
      await store.commit(db.trafficOps('acme', { ...seen, lists: ['news'] }, 'news'), { sync: true });
      await store.commit(db.trafficOps('acme', { ...seen, lists: ['news', 'offers'] }, 'offers'), { sync: true });
      assert.deepEqual((await db.get('acme', 'new@example.com'))?.lists, ['news', 'offers']);
    }));

    test('PATCH and PUT: set and remove fields, created said once, more than 100 fields refused with nothing written', run(async ({ db }) => {
      const a = await db.setFields('acme', 'ada@Example.COM', { first_name: 'Ada', city: 'Paris' });
      assert.equal(a.created, true);
      const b = await db.setFields('acme', 'ada@example.com', { city: null, plan: 'gold' });
      assert.equal(b.created, false);
      assert.deepEqual(b.fields, { first_name: 'Ada', plan: 'gold' });
      assert.deepEqual((await db.get('acme', 'ada@EXAMPLE.com'))?.fields, { first_name: 'Ada', plan: 'gold' });
      const c = await db.setFields('acme', 'ada@example.com', { only: 'this' }, true);
      assert.deepEqual(c.fields, { only: 'this' }, 'PUT replaces');
      const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`f${i}`, 'x']));
      await assert.rejects(db.setFields('acme', 'ada@example.com', many), (e: unknown) => e instanceof PostinoError && e.httpStatus === 400);
      assert.deepEqual((await db.get('acme', 'ada@example.com'))?.fields, { only: 'this' }, 'unchanged');
      await assert.rejects(db.setFields('acme', 'fresh@example.com', { ...many, one: 'more' }), (e: unknown) => e instanceof PostinoError && e.httpStatus === 400);
      assert.equal(await db.get('acme', 'fresh@example.com'), undefined, 'a refused PUT creates nothing');
    }));

    test('listing and export: 2,500 entries per account in byte order, resumed from any cursor, CSV columns sorted', run(async ({ store, db }) => {
      const n = 2500;
      for (const account of ['acme', 'acme2']) {
        const rows = Array.from({ length: n }, (_, i) => `U${String(n - i).padStart(5, '0')}@example.com,${i}`);
        await importRecipients({ store, db, account, format: 'csv' }, csv(['address,zeta', ...rows, 'a@example.com,x', '_b@example.com,y']));
      }
      await db.setFields('acme', 'a@example.com', { alpha: '1' });
      const all = await collect(db.entries({ account: 'acme' }));
      assert.equal(all.length, n + 2);
      const bytes = all.map((e) => Buffer.from(e.address));
      assert.deepEqual(bytes, [...bytes].sort(Buffer.compare), 'byte order (upper case before _ before lower case)');
      const resumed = await collect(db.entries({ account: 'acme', after: all[1234]!.cursor }));
      assert.deepEqual(resumed.map((e) => e.address), all.slice(1235).map((e) => e.address), 'no gap, no repeat');
      const everyone = await collect(db.entries());
      assert.deepEqual(everyone.map((e) => e.account), [...Array(n + 2).fill('acme'), ...Array(n + 2).fill('acme2')]);
      assert.equal((await collect(db.entries({ after: everyone[n + 1]!.cursor })))[0]!.account, 'acme2');
      const suppression = new LevelSuppressionList(store);
      const text = (await collect(exportCsv(db, suppression, 'acme'))).join('');
      const lines = text.trimEnd().split('\r\n');
      assert.equal(lines[0], 'address,alpha,zeta');
      assert.equal(lines.length, n + 3);
      assert.equal(lines[1], 'U00001@example.com,,2499');
      assert.equal(lines[n + 2], 'a@example.com,1,x');
    }));

    test('accounts are apart: same address, separate fields; lookups and listings see their own account only', run(async ({ db }) => {
      await db.setFields('a', 'same@example.com', { who: 'A' });
      await db.setFields('b', 'same@example.com', { who: 'B' });
      await db.setFields('b', 'only-b@example.com', { who: 'B2' });
      assert.deepEqual((await db.lookupForTraffic('a', ['same@example.com', 'only-b@example.com'])).records.map((r) => r?.fields.who), ['A', undefined]);
      assert.deepEqual((await collect(db.entries({ account: 'a' }))).map((e) => e.address), ['same@example.com']);
      assert.deepEqual(await db.fieldNames('a'), ['who']);
      assert.equal((await db.viewMany('b', ['same@example.com']))[0]?.fields.who, 'B');
    }));

    test('erase: gone, marked deleted (traffic and imports do not bring it back), a PUT re-creates it', run(async ({ store, db }) => {
      await db.setFields('acme', 'ada@example.com', { first_name: 'Ada' });
      await store.commit(await db.eraseOps('acme', 'ada@example.com', new Date().toISOString()), { sync: true });
      assert.equal(await db.get('acme', 'ada@example.com'), undefined);
      assert.deepEqual((await db.lookupForTraffic('acme', ['ada@example.com', 'new@example.com'])).erased, [true, false]);
      assert.deepEqual(await db.erasedMany('acme', ['ada@example.com', 'new@example.com']), [true, false]);
      assert.deepEqual(await db.erasedMany('other', ['ada@example.com']), [false], 'another account is not affected');
      const imp = await importRecipients({ store, db, account: 'acme', format: 'csv' }, csv(['address,first_name', 'ada@example.com,Again']));
      assert.equal(imp.rejectedCount, 1);
      assert.equal(await db.get('acme', 'ada@example.com'), undefined);
      assert.equal((await db.setFields('acme', 'ada@example.com', { first_name: 'Back' }, true)).created, true);
      assert.deepEqual((await db.lookupForTraffic('acme', ['ada@example.com'])).erased, [false]);
    }));

    test('counters: deltas added to existing entries only, the later time kept', run(async ({ db }) => {
      await db.setFields('acme', 'ada@example.com', { n: '1' });
      const d = (sent: number, lastSent: string) => ({ sent, bounced: 1, complained: 0, lastSent });
      await db.countEvents([{ account: 'acme', address: 'ada@example.com', d: d(2, '2026-11-02T00:00:00.000Z') }, { account: 'acme', address: 'ghost@example.com', d: d(1, '2026-11-02T00:00:00.000Z') }], 10, []);
      await db.countEvents([{ account: 'acme', address: 'ada@example.com', d: d(1, '2026-11-01T00:00:00.000Z') }], 11, []);
      const [v, ghost] = await db.viewMany('acme', ['ada@example.com', 'ghost@example.com']);
      assert.deepEqual([v?.sent, v?.bounced, v?.complained, v?.lastSent], [3, 2, 0, '2026-11-02T00:00:00.000Z']);
      assert.equal(ghost, undefined, 'counters never create an entry');
    }));
  });
}

describe('PostgreSQL: shared between nodes, and unavailable', { skip: pgFile.skip }, () => {
  test('a PATCH through node A is what node B merges; traffic entries parked on A reach B; counters count once per node cursor', async () => {
    const a = await pgBackend(undefined, 'node-a');
    const b = await pgBackend(a.url, 'node-b');
    try {
      await a.db.setFields('acme', 'ada@example.com', { first_name: 'Ada' });
      assert.equal((await b.db.lookupForTraffic('acme', ['ada@example.com'])).records[0]?.fields.first_name, 'Ada');
      await importRecipients({ store: b.store, db: b.db, account: 'acme', format: 'csv' }, csv(['address,city', 'ada@example.com,Paris']));
      assert.deepEqual((await a.db.lookupForTraffic('acme', ['ada@example.com'])).records[0]?.fields, { first_name: 'Ada', city: 'Paris' });
      await a.store.commit(a.db.trafficOps('acme', { address: 'new@example.com', fields: {}, lists: ['news'], firstSeen: new Date().toISOString() }, 'news'), { sync: true });
      await a.db.flushParked();
      assert.deepEqual((await b.db.lookupForTraffic('acme', ['new@example.com'])).records[0]?.lists, ['news']);
      assert.deepEqual(await a.store.db.keys({ gte: 'rp!', lt: 'rp!\uffff' }).all(), [], 'nothing left parked');
      // Each node's projection adds its own counts; a pass replayed after a crash (same last seq) is not counted twice.
      const delta = [{ account: 'acme', address: 'ada@example.com', d: { sent: 1, bounced: 0, complained: 0 } }];
      await a.db.countEvents(delta, 5, []);
      await a.db.countEvents(delta, 5, []);
      await b.db.countEvents(delta, 5, []);
      assert.equal((await b.db.viewMany('acme', ['ada@example.com']))[0]?.sent, 2);
      assert.deepEqual([await a.db.countedUpTo(), await b.db.countedUpTo()], [5, 5]);
    } finally {
      await b.close();
      await a.close();
    }
  });

  test('rewrap with PostgreSQL stopped: the lookup throws 451 4.3.0, the message goes back, no copy is made; when it returns the copy carries its merge value', async () => {
    const b = await pgBackend();
    const dir = tempDir('rcpt-rewrap');
    const store = await Store.open(path.join(dir, 'hosted'));
    try {
      const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
      const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
      const events = await EventLog.open(store);
      const config = parseConfig({ accounts: [{ id: 'default' }] });
      const worker = new RewrapWorker({ intake, delivery, events, services: { suppression: new LevelSuppressionList(store), recipients: b.db, copies: new CopyIndex(store) }, settings: resolveRewrapSettings(config, dir), log: silent });
      // The dead letter's clock runs 10 s behind, so a message it gives back is due again at once.
      const dead = new DeadLetter<IntakeMeta>({ queue: intake, limit: { maxAttempts: 2, backoffMs: [1000] }, countLeases: true, failedEvents: () => ({ ops: [], settle() {}, abandon() {} }), log: silent, clock: () => Date.now() - 10_000 });
      await b.db.setFields('default', 'ada@example.com', { first_name: 'Ada' });
      await intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'shop@example.org', rcptTo: ['ada@example.com'], clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body: Buffer.from('From: shop@example.org\r\nTo: ada@example.com\r\nSubject: x\r\n\r\nHello {{first_name|friend}}\r\n') });
      await pgFile.cluster().stop();
      const err = await b.db.lookupForTraffic('default', ['ada@example.com']).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof PostinoError && err.code === 'SHARED_STATE_UNAVAILABLE' && err.smtpCode === 451 && err.enhanced === '4.3.0', String(err));
      await assert.rejects(b.db.viewMany('default', ['ada@example.com']), (e: unknown) => e instanceof PostinoError && e.httpStatus === 503, 'the API answers 503');
      // More attempts than engine.maxAttempts (2 here): an outage never moves the message to failed.
      for (let i = 0; i < 3; i++) {
        const [rec] = await intake.lease(1, 60_000);
        assert.ok(rec, `attempt ${i}: the message is back in the queue`);
        const e = await worker.handle(rec).then(() => undefined, (x: unknown) => x);
        assert.ok(e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE', `attempt ${i}: ${String(e)}`);
        assert.equal(await dead.crashed(rec, e), 'deferred');
        assert.equal(delivery.size, 0, 'nothing passed to delivery without its merge values');
      }
      assert.equal(intake.failedCount, 0);
      await pgFile.cluster().start();
      const [rec] = await intake.lease(1, 60_000);
      await worker.handle(rec!);
      const copies = await collect(delivery.records());
      assert.equal(copies.length, 1);
      assert.match((await delivery.readBody(copies[0]!)).toString('utf8'), /Hello Ada\r\n/);
      assert.equal(intake.size, 0);
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
      await b.close();
    }
  });
});
