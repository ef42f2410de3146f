/*
 * One suite, both backends of the statistics (engine/events/stats.ts):
 * LevelDB counters folded from the node's own log, and PostgreSQL counters
 * folded from the global event feed (stats-postgres.ts) that two nodes ship
 * to, each with its own LevelDB log, in a cluster this file starts. On
 * LevelDB "node A" and "node B" are one node (there is only one).
 *
 * Same cases on both: the figures per day, hour, tag, sender, domain, stream
 * and account; a second fold (and, on PostgreSQL, two nodes folding at once)
 * counts nothing twice; retention; the reputation brake on node B judging
 * 300 messages sent through A and 200 through B. Then what only PostgreSQL
 * has: stopped, a query fails with a temporary error and the events written
 * meanwhile are counted, once, when it returns.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import { PostinoError } from '../../../common/errors.js';
import { NOTIFY_TAG, type EventInput } from '../../../common/events.js';
import { createLogger } from '../../../common/log.js';
import { migrate } from '../../../common/storage/postgres/migrations.js';
import { openPool, type PgPool } from '../../../common/storage/postgres/pool.js';
import { Store } from '../../../common/store.js';
import { DeliveryPause } from '../../../engine/delivery/delivery-pause.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { EventShipper } from '../../../engine/events/event-shipper.js';
import { indexEvents } from '../../../engine/events/events-stage.js';
import { ReputationBrake } from '../../../engine/events/reputation-brake.js';
import { PgStats } from '../../../engine/events/stats-postgres.js';
import type { StatsCounters } from '../../../engine/events/stats.js';
import { until } from '../../helpers/fake-clock.js';
import { clusterForFile, type PgCluster } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/postino.js';

const pgFile = clusterForFile();
const silent = createLogger('test', 'silent');

interface NodeUnderTest {
  store: Store;
  events: EventLog;
  /** What the API, dashboard and brake of this node read. */
  stats: StatsCounters;
}

interface Installation {
  a: NodeUnderTest;
  b: NodeUnderTest;
  /** Everything written so far is where the statistics read it, and folded. */
  settle(): Promise<void>;
  close(): Promise<void>;
  pg?: { cluster: PgCluster; pool: PgPool; shippers: EventShipper[] };
}

async function levelInstallation(): Promise<Installation> {
  const store = await Store.open(tempDir('stats-level'));
  const events = await EventLog.open(store);
  const { stats } = indexEvents(store, events);
  const node = { store, events, stats };
  return { a: node, b: node, settle: () => stats.fold(), close: () => store.close() };
}

async function pgInstallation(): Promise<Installation> {
  const cluster = pgFile.cluster();
  const url = await cluster.newDatabase();
  const pool = (): PgPool => openPool({ url, poolSize: 3, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
  const admin = pool();
  await migrate(admin);
  const shippers: EventShipper[] = [];
  const pools: PgPool[] = [admin];
  const stores: Store[] = [];
  const node = async (name: string): Promise<NodeUnderTest> => {
    const store = await Store.open(tempDir(`stats-pg-${name}`));
    const events = await EventLog.open(store);
    indexEvents(store, events, { localStats: false }); // as app/hosted.ts does with storage.postgres
    const p = pool();
    const shipper = new EventShipper({ pool: p, events, node: name, log: silent });
    shipper.start();
    shippers.push(shipper);
    pools.push(p);
    stores.push(store);
    return { store, events, stats: new PgStats(p) };
  };
  const a = await node('a');
  const b = await node('b');
  return {
    a,
    b,
    pg: { cluster, pool: admin, shippers },
    async settle() {
      for (const s of shippers) await s.kick();
      await a.stats.fold();
      await b.stats.fold();
    },
    async close() {
      for (const s of shippers) await s.stop();
      for (const p of pools) await p.end();
      for (const s of stores) await s.close();
    },
  };
}

const BACKENDS = [
  { name: 'LevelDB', skip: undefined as string | undefined, open: levelInstallation },
  { name: 'PostgreSQL', skip: pgFile.skip, open: pgInstallation },
];

const AT = '2026-11-02T10:15:00.000Z';
const many = (n: number, e: EventInput): EventInput[] => Array.from({ length: n }, (_, i) => ({ at: AT, ...e, recipient: e.recipient ?? `r${i}@example.com` }));
const DAY = { from: Date.parse('2026-11-02T00:00:00Z'), to: Date.parse('2026-11-02T23:59:59Z') };

for (const backend of BACKENDS) {
  describe(`statistics on ${backend.name}`, { skip: backend.skip }, () => {
    test('figures per day, hour, tag, sender, domain, stream and account count both nodes, each event once', async () => {
      const i = await backend.open();
      try {
        await i.a.events.append([
          ...many(3, { type: 'delivered', account: 'shop', tag: 'welcome', sender: 'News@Shop.example', stream: 'bulk', recipient: 'x@gmail.com' }),
          ...many(1, { type: 'bounced', account: 'shop', tag: 'welcome', bounce: { class: 'hard', status: '5.1.1' }, stream: 'bulk', recipient: 'y@yahoo.com' }),
          { at: '2026-11-02T11:05:00.000Z', type: 'opened', account: 'shop', first: true, stream: 'bulk' },
        ]);
        await i.b.events.append([...many(2, { type: 'delivered', account: 'shop', tag: 'reset', stream: 'transactional', recipient: 'z@gmail.com' }), ...many(4, { type: 'accepted', account: 'crm' })]);
        // Our own notices to the account's people are not its sending: they count nowhere below.
        const notice = { account: 'shop', tag: NOTIFY_TAG, stream: 'transactional' as const, recipient: 'it@shop.example' };
        await i.b.events.append([{ at: AT, type: 'delivered', ...notice }, { at: AT, type: 'bounced', bounce: { class: 'hard', status: '5.1.1' }, ...notice }]);
        await i.settle();
        await i.a.stats.fold(); // again, and from the other node: nothing counted twice
        await i.settle();
        const s = i.b.stats;
        const day = await s.query({ ...DAY, groupBy: 'day', account: 'shop' });
        assert.deepEqual(day.rows.map((r) => [r.key, r.delivered, r.bounced, r.hardBounced, r.opened, r.uniqueOpened]), [['2026-11-02', 5, 1, 1, 1, 1]]);
        const hour = await s.query({ ...DAY, groupBy: 'hour', account: 'shop' });
        assert.deepEqual(hour.rows.map((r) => [r.key, r.delivered, r.opened]), [['2026-11-02T10', 5, 0], ['2026-11-02T11', 0, 1]]);
        const tag = await s.query({ ...DAY, groupBy: 'tag', account: 'shop' });
        assert.deepEqual(tag.rows.map((r) => [r.key, r.delivered, r.bounced]), [['reset', 2, 0], ['welcome', 3, 1]]);
        const sender = await s.query({ ...DAY, groupBy: 'sender', account: 'shop' });
        assert.deepEqual(sender.rows.map((r) => [r.key, r.delivered]), [['news@shop.example', 3]]);
        const domain = await s.query({ ...DAY, groupBy: 'domain', account: 'shop' });
        assert.deepEqual(domain.rows.map((r) => [r.key, r.delivered, r.bounced]), [['gmail.com', 5, 0], ['yahoo.com', 0, 1]]);
        const bulk = await s.query({ ...DAY, groupBy: 'hour', account: 'shop', stream: 'bulk' });
        assert.deepEqual(bulk.rows.map((r) => [r.key, r.delivered, r.opened]), [['2026-11-02T10', 3, 0], ['2026-11-02T11', 0, 1]]);
        const accounts = await i.a.stats.query({ ...DAY, groupBy: 'account', account: undefined });
        assert.deepEqual(accounts.rows.map((r) => [r.key, r.accepted, r.delivered]), [['crm', 4, 0], ['shop', 0, 5]]);
        assert.equal(accounts.total.delivered, 5);
        const outside = await s.query({ from: Date.parse('2026-11-03T00:00:00Z'), to: Date.parse('2026-11-04T00:00:00Z'), groupBy: 'day', account: 'shop' });
        assert.deepEqual(outside.rows, []);
        await assert.rejects(s.query({ from: DAY.to, to: DAY.from, groupBy: 'day', account: 'shop' }), (e: unknown) => e instanceof PostinoError && e.code === 'BAD_REQUEST');
        await assert.rejects(s.query({ ...DAY, groupBy: 'tag', account: 'shop', stream: 'bulk' }), (e: unknown) => e instanceof PostinoError && e.code === 'BAD_REQUEST');
      } finally {
        await i.close();
      }
    });

    test('two folds at once count a batch once; retention deletes the counters of old buckets only', async () => {
      const i = await backend.open();
      try {
        await i.a.events.append(many(150, { type: 'delivered', account: 'shop' }));
        await i.b.events.append([...many(50, { type: 'delivered', account: 'shop' }), ...many(7, { at: '2026-10-01T08:00:00.000Z', type: 'delivered', account: 'shop' })]);
        for (const s of i.pg?.shippers ?? []) await s.kick();
        await Promise.all([i.a.stats.fold(), i.b.stats.fold(), i.a.stats.fold(), i.b.stats.fold()]);
        await i.settle();
        const all = { from: Date.parse('2026-09-01T00:00:00Z'), to: DAY.to, groupBy: 'day' as const, account: 'shop' };
        assert.deepEqual((await i.b.stats.query(all)).rows.map((r) => [r.key, r.delivered]), [['2026-10-01', 7], ['2026-11-02', 200]]);
        // The old day's hour and day of the whole account and its recipient domain; nothing of the kept day.
        assert.equal(await i.a.stats.prune(Date.parse('2026-10-15T00:00:00Z'), 1_000), 3);
        assert.deepEqual((await i.b.stats.query(all)).rows.map((r) => [r.key, r.delivered]), [['2026-11-02', 200]]);
      } finally {
        await i.close();
      }
    });

    test("the reputation brake on node B judges the account's mail through both nodes: 300 via A + 200 via B with 2 complaints is 0.4% of 500", async () => {
      const i = await backend.open();
      try {
        // Defaults: at least 500 outcomes, pause at 0.3% complaints. Node A's 300 alone would not be judged.
        const config = parseConfig({}).events.brake;
        const killSwitch = await DeliveryPause.open(i.b.store);
        const brake = new ReputationBrake({ store: i.b.store, events: i.b.events, stats: i.b.stats, killSwitch, config, log: silent });
        await brake.start();
        const now = new Date().toISOString();
        await i.a.events.append(many(300, { at: now, type: 'delivered', account: 'shop' }));
        await i.b.events.append(many(200, { at: now, type: 'delivered', account: 'shop' }));
        // A notice to the account's people delivered meanwhile is not one of its messages: still 500.
        await i.b.events.append(many(1, { at: now, type: 'delivered', account: 'shop', tag: NOTIFY_TAG, recipient: 'it@shop.example' }));
        await i.settle();
        assert.equal(killSwitch.isPaused('shop'), false);
        await i.a.events.append(many(2, { at: now, type: 'complained', account: 'shop' }));
        await until(async () => {
          await i.settle();
          return killSwitch.isPaused('shop');
        }, 'node B pauses the account on complaints that came through node A', 15_000);
        const figures = await brake.figures('shop');
        assert.deepEqual(figures, { window: '24h', sent: 500, complaintRate: 0.004, hardBounceRate: 0, blockRate: 0 });
        const [paused] = await i.b.events.read(0, 10_000, (e) => e.type === 'paused');
        assert.match(paused!.reason!, /complaint rate 0\.40% ≥ 0\.30% over the last 24h \(500 messages\)/);
      } finally {
        await i.close();
      }
    });
  });
}

describe('statistics on PostgreSQL only', { skip: pgFile.skip }, () => {
  test('PostgreSQL stopped: a query fails as a temporary error; what the nodes wrote meanwhile is counted once when it returns', { timeout: 120_000 }, async () => {
    const i = await pgInstallation();
    const { cluster } = i.pg!;
    try {
      await i.a.events.append(many(10, { type: 'delivered', account: 'shop' }));
      await i.settle();
      await cluster.stop();
      await i.a.events.append(many(5, { type: 'delivered', account: 'shop' }));
      await i.b.events.append(many(5, { type: 'delivered', account: 'shop' }));
      await assert.rejects(i.b.stats.query({ ...DAY, groupBy: 'day', account: 'shop' }), (e: unknown) => e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE');
      await cluster.start();
      await until(async () => {
        await i.settle().catch(() => undefined); // the pools' first queries after the restart may still fail
        const r = await i.b.stats.query({ ...DAY, groupBy: 'day', account: 'shop' }).catch(() => undefined);
        return r?.total.delivered === 20;
      }, 'the 10 written while PostgreSQL was down counted', 30_000);
      await i.settle();
      assert.equal((await i.a.stats.query({ ...DAY, groupBy: 'day', account: 'shop' })).total.delivered, 20);
    } finally {
      await i.close();
    }
  });
});
