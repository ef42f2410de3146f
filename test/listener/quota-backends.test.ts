/*
 * The account quotas on both counters, one suite: this node's LevelDB
 * (quota.ts; its key layout and restart are in quota.test.ts) and PostgreSQL
 * (quota-postgres.ts) in this file's own cluster, a fresh database per test.
 * Then what only a shared counter has: a limit that holds across two nodes,
 * and a database outage during which mail is still accepted and counted.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, test } from 'node:test';
import { PostinoError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { migrate } from '../../common/storage/postgres/migrations.js';
import { Store } from '../../common/store.js';
import { PgQuotas } from '../../listener/quota-postgres.js';
import { Quotas, type QuotaCounter, type QuotaLimits } from '../../listener/quota.js';
import { clusterForFile, shortPool } from '../helpers/postgres.js';
import { tempDir } from '../helpers/postino.js';

/** 2030-03-10T12:00:00Z */
const NOON = Date.UTC(2030, 2, 10, 12);
const HOUR = 3_600_000;
const silent = createLogger('test', 'silent');

const pgFile = clusterForFile();
const pgSkip = pgFile.skip;

interface Rig {
  store: Store;
  /** A counter on this rig's storage (a second call on PostgreSQL = a second node). */
  counter(limits: QuotaLimits[], clock: () => number): Promise<QuotaCounter>;
  close(): Promise<void>;
}

async function withStore(fn: (store: Store, dir: string) => Promise<Omit<Rig, 'store'>>): Promise<Rig> {
  const dir = tempDir('quota-rig');
  const store = await Store.open(dir);
  const rest = await fn(store, dir);
  return {
    store,
    counter: rest.counter,
    async close() {
      await rest.close();
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const RIGS: Array<{ name: string; skip: string | undefined; open(): Promise<Rig> }> = [
  { name: 'LevelDB', skip: undefined, open: () => withStore(async (store) => ({ counter: (limits, clock) => Quotas.open(store, limits, clock), close: async () => undefined })) },
  {
    name: 'PostgreSQL',
    skip: pgSkip,
    open: () =>
      withStore(async () => {
        const p = shortPool(await pgFile.cluster().newDatabase(), 8);
        await migrate(p);
        const made: PgQuotas[] = [];
        return {
          counter: async (limits, clock) => {
            const q = new PgQuotas(p, limits, clock, silent);
            made.push(q);
            return q;
          },
          async close() {
            for (const q of made) await q.close();
            await p.end();
          },
        };
      }),
  },
];

/** Counts one message as the listener does: reserve, commit the intake batch, done. */
async function accept(store: Store, q: QuotaCounter, account: string, recipients = 1): Promise<void> {
  const r = await q.reserve(account, recipients);
  await store.commit(r.ops, { sync: true });
  r.done(true);
}

const refused = (window: 'Hourly' | 'Daily') => (e: unknown) => e instanceof PostinoError && e.code === 'QUOTA_EXCEEDED' && e.smtpCode === 452 && e.enhanced === '4.5.3' && e.reason.startsWith(window);

for (const rig of RIGS) {
  describe(`quotas counted in ${rig.name}`, { skip: rig.skip }, () => {
    const run = (fn: (r: Rig) => Promise<void>) => async () => {
      const r = await rig.open();
      try {
        await fn(r);
      } finally {
        await r.close();
      }
    };

    test('the hourly limit holds, MAIL is refused once it is reached, the next hour starts again; the day keeps counting', run(async ({ store, counter }) => {
      const clock = { t: NOON };
      const q = await counter([{ id: 'shop', perHour: 3, perDay: 5 }, { id: 'free', perHour: 0, perDay: 0 }], () => clock.t);
      for (let i = 0; i < 3; i++) await accept(store, q, 'shop');
      await assert.rejects(Promise.resolve().then(() => q.reserve('shop')), refused('Hourly'));
      assert.throws(() => q.check('shop'), refused('Hourly'));
      assert.deepEqual(q.usage('shop'), { hour: 3, day: 3 });
      clock.t += HOUR;
      assert.doesNotThrow(() => q.check('shop'));
      await accept(store, q, 'shop');
      await accept(store, q, 'shop');
      await assert.rejects(Promise.resolve().then(() => q.reserve('shop')), refused('Daily'));
      for (let i = 0; i < 10; i++) await accept(store, q, 'free');
      assert.equal(q.usage('free'), undefined, 'an account without limits is not counted');
    }));

    test('a message whose intake batch failed gives its units back; with unit "recipients" a message is refused whole', run(async ({ store, counter }) => {
      const q = await counter([{ id: 'shop', perHour: 6, perDay: 0, unit: 'recipients' }], () => NOON);
      const r = await q.reserve('shop', 5);
      r.done(false);
      assert.deepEqual(q.usage('shop'), { hour: 0, day: 0 });
      await accept(store, q, 'shop', 5);
      await assert.rejects(Promise.resolve().then(() => q.reserve('shop', 2)), refused('Hourly'));
      await accept(store, q, 'shop', 1);
      assert.deepEqual(q.usage('shop'), { hour: 6, day: 6 });
    }));
  });
}

describe('quotas shared by two nodes', { skip: pgSkip }, () => {
  test('100 per hour across two nodes: of 150 messages sent to both at once, exactly 100 are accepted', async () => {
    const url = await pgFile.cluster().newDatabase();
    const pools = [shortPool(url, 8), shortPool(url, 8)];
    await migrate(pools[0]!);
    const limits = [{ id: 'shop', perHour: 100, perDay: 0 }];
    const nodes = pools.map((p) => new PgQuotas(p, limits, () => NOON, silent));
    try {
      const results = await Promise.allSettled(Array.from({ length: 150 }, (_, i) => nodes[i % 2]!.reserve('shop').then((r) => r.done(true))));
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 100);
      assert.ok(results.every((r) => r.status === 'fulfilled' || refused('Hourly')(r.reason)), 'the rest are 452 4.5.3');
      const row = await pools[0]!.query<{ n: string }>(`SELECT n FROM quota_counters WHERE account = 'shop' AND win = 'h:2030031012'`);
      assert.equal(row.rows[0]!.n, '100');
    } finally {
      for (const n of nodes) await n.close();
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  test('PostgreSQL stopped: a node keeps accepting within its own view of the limit, and the counts reach the other node when it returns', async () => {
    const url = await pgFile.cluster().newDatabase();
    const pools = [shortPool(url, 8), shortPool(url, 8)];
    await migrate(pools[0]!);
    const limits = [{ id: 'shop', perHour: 10, perDay: 0 }];
    const [a, b] = pools.map((p) => new PgQuotas(p, limits, () => NOON, silent));
    try {
      for (let i = 0; i < 4; i++) await (await a!.reserve('shop')).done(true);
      await pgFile.cluster().stop();
      for (let i = 0; i < 3; i++) await (await a!.reserve('shop')).done(true); // counted on node A only
      assert.deepEqual(a!.usage('shop'), { hour: 7, day: 7 });
      await pgFile.cluster().start();
      await a!.flush();
      for (let i = 0; i < 3; i++) await (await b!.reserve('shop')).done(true);
      await assert.rejects(b!.reserve('shop'), refused('Hourly'), 'node B counts node A\'s 7, written when PostgreSQL returned');
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await a!.close();
      await b!.close();
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
