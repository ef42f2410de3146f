/*
 * The reputation brake's records on both backends (engine/events/brake-records.ts,
 * brake-records-postgres.ts), each node with the real kill-switch, statistics
 * and event log. LevelDB: one node, its brake restarted. PostgreSQL: two nodes
 * on one database in a cluster this file starts, each with its own LevelDB
 * log shipped to the global feed, the installation's statistics (PgStats),
 * the shared switch and the shared records, then a third node started late.
 *
 * Same case on both: complaints over the limit are ONE `paused` event across
 * every node's log (one notice), the account paused on every node; a resume
 * (through node B) is ONE `resumed` event; further folds on any node, and a
 * node that was down during the pause and the resume, do not pause again on
 * the complaints already acted on. Then, PostgreSQL only: a claim committed
 * by a node that died before writing its event gets its event at that node's
 * next start, once; a claim that never reached PostgreSQL gets none.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import type { EventInput } from '../../../common/events.js';
import { createLogger } from '../../../common/log.js';
import { migrate } from '../../../common/storage/postgres/migrations.js';
import { openPool, type PgPool } from '../../../common/storage/postgres/pool.js';
import { Store } from '../../../common/store.js';
import { DeliveryPause } from '../../../engine/delivery/delivery-pause.js';
import { PgPauseStore } from '../../../engine/delivery/pause-store-postgres.js';
import { LevelBrakeRecords } from '../../../engine/events/brake-records.js';
import { PgBrakeRecords } from '../../../engine/events/brake-records-postgres.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { EventShipper } from '../../../engine/events/event-shipper.js';
import { indexEvents } from '../../../engine/events/events-stage.js';
import { ReputationBrake } from '../../../engine/events/reputation-brake.js';
import { PgStats } from '../../../engine/events/stats-postgres.js';
import { FOLD_INTERVAL_MS, type StatsCounters } from '../../../engine/events/stats.js';
import { until } from '../../helpers/fake-clock.js';
import { clusterForFile } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/postino.js';

const pgFile = clusterForFile();
const silent = createLogger('test', 'silent');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const config = parseConfig({ events: { brake: { minMessages: 100 } } }).events.brake;
const many = (n: number, e: EventInput): EventInput[] => Array.from({ length: n }, (_, i) => ({ ...e, recipient: `r${i}@example.com` }));

interface BrakeNode {
  events: EventLog;
  pause: DeliveryPause;
  brake: ReputationBrake;
  stats: StatsCounters;
}

interface Installation {
  /** A node of the installation (LevelDB: the one node, its brake started anew each time). */
  node(): Promise<BrakeNode>;
  /** Everything written is shipped and folded, as every node's fold timer would. */
  settle(): Promise<void>;
  /** Every `paused`/`resumed` event in every node's log. */
  decisions(): Promise<Array<{ type: string; account: string }>>;
  close(): Promise<void>;
}

async function levelInstallation(): Promise<Installation> {
  const store = await Store.open(tempDir('brake-level'));
  const events = await EventLog.open(store);
  const { stats } = indexEvents(store, events);
  const pause = await DeliveryPause.open(store);
  const brakes: ReputationBrake[] = [];
  return {
    async node() {
      for (const b of brakes) await b.stop(); // one node: a new brake is its restart
      const brake = new ReputationBrake({ store, events, stats, killSwitch: pause, config, log: silent, records: new LevelBrakeRecords(store, events) });
      await brake.start();
      brakes.push(brake);
      return { events, pause, brake, stats };
    },
    settle: () => stats.fold(),
    decisions: async () => (await events.read(0, 100_000, (e) => e.type === 'paused' || e.type === 'resumed')).map((e) => ({ type: e.type, account: e.account })),
    async close() {
      for (const b of brakes) await b.stop();
      await store.close();
    },
  };
}

async function pgInstallation(): Promise<Installation & { url: string; dir(i: number): string }> {
  const url = await pgFile.cluster().newDatabase();
  const pool = (): PgPool => openPool({ url, poolSize: 3, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
  const admin = pool();
  await migrate(admin);
  const nodes: Array<BrakeNode & { shipper: EventShipper; close(): Promise<void> }> = [];
  const dirs: string[] = [];
  return {
    url,
    dir: (i) => dirs[i]!,
    async node() {
      const name = `n${nodes.length}`;
      const dir = tempDir(`brake-pg-${name}`);
      dirs.push(dir);
      const store = await Store.open(dir);
      const events = await EventLog.open(store);
      indexEvents(store, events, { localStats: false }); // as app/hosted.ts does with storage.postgres
      const p = pool();
      const shipper = new EventShipper({ pool: p, events, node: name, log: silent });
      shipper.start();
      const pause = await DeliveryPause.open(store, new PgPauseStore(p, store, silent));
      const stats = new PgStats(p);
      const brake = new ReputationBrake({ store, events, stats, killSwitch: pause, config, log: silent, records: new PgBrakeRecords(p, store, events, silent) });
      await brake.start();
      // Each node folds on its own beat, as events-stage.ts does: a node that found the fold taken notices it at its next one.
      const folder = setInterval(() => void stats.fold().catch(() => undefined), FOLD_INTERVAL_MS);
      const n = {
        events,
        pause,
        brake,
        stats,
        shipper,
        async close() {
          clearInterval(folder);
          await brake.stop();
          await shipper.stop();
          await pause.close();
          await p.end();
          await store.close();
        },
      };
      nodes.push(n);
      return n;
    },
    async settle() {
      for (const n of nodes) await n.shipper.kick();
      // Every node folds (one of them does the work; each then tells its brake what changed).
      await Promise.all(nodes.map((n) => n.stats.fold()));
    },
    async decisions() {
      const out: Array<{ type: string; account: string }> = [];
      for (const n of nodes) out.push(...(await n.events.read(0, 100_000, (e) => e.type === 'paused' || e.type === 'resumed')).map((e) => ({ type: e.type, account: e.account })));
      return out;
    },
    async close() {
      for (const n of nodes) await n.close();
      await admin.end();
    },
  };
}

const BACKENDS = [
  { name: 'LevelDB', skip: undefined as string | undefined, open: levelInstallation },
  { name: 'PostgreSQL', skip: pgFile.skip, open: pgInstallation },
];

for (const backend of BACKENDS) {
  describe(`reputation brake records on ${backend.name}`, { skip: backend.skip }, () => {
    test('one pause and one resume across the nodes; no pause again on the complaints acted on, also by a node started afterwards', { timeout: 60_000 }, async () => {
      const i = await backend.open();
      try {
        const a = await i.node();
        const b = backend.name === 'LevelDB' ? a : await i.node();
        // Long enough for every brake to judge what was folded; on PostgreSQL also for one beat (2 s) of each.
        const beat = backend.name === 'LevelDB' ? 500 : 2_500;
        const count = async (type: string): Promise<number> => (await i.decisions()).filter((d) => d.type === type && d.account === 'shop').length;
        await i.settle(); // each node's first fold marks where it starts noticing, as its fold timer does right after start
        await a.events.append(many(200, { type: 'delivered', account: 'shop' }));
        await b.events.append(many(2, { type: 'complained', account: 'shop' }));
        await i.settle();
        await until(() => a.pause.isPaused('shop') && b.pause.isPaused('shop'), 'paused on every node', 15_000);
        await sleep(beat); // both brakes judged the fold, and (PostgreSQL) a beat re-read the records
        assert.equal(await count('paused'), 1, 'one `paused` event across the nodes: one notice');
        assert.deepEqual(
          [a, b].map((n) => n.brake.state().map((s) => [s.account, s.figures?.complaintRate])),
          [[['shop', 0.01]], [['shop', 0.01]]],
          'every node lists the pause with its figures',
        );

        await b.pause.resume('shop');
        await until(async () => (await count('resumed')) === 1, 'the resume recorded', 15_000);
        // More mail on both nodes, folded on both, judged by both (and their beats).
        await a.events.append(many(50, { type: 'delivered', account: 'shop' }));
        await b.events.append(many(50, { type: 'delivered', account: 'shop' }));
        await i.settle();
        await sleep(beat);
        await i.settle();
        assert.equal(a.pause.isPaused('shop') || b.pause.isPaused('shop'), false, 'not paused again on the complaints acted on');
        assert.deepEqual([await count('paused'), await count('resumed')], [1, 1]);
        assert.deepEqual((await b.brake.figures('shop')).sent, 100, 'judged on what came after the resume');

        // A node that was down during the pause and the resume (LevelDB: the brake restarted).
        const c = await i.node();
        await i.settle();
        await c.events.append(many(20, { type: 'delivered', account: 'shop' }));
        await i.settle();
        await sleep(beat);
        await i.settle();
        assert.equal(c.pause.isPaused('shop'), false, 'the late node judges by the shared baseline');
        assert.deepEqual(c.brake.state(), []);
        assert.deepEqual((await c.brake.figures('shop')).sent, 120);
        assert.deepEqual([await count('paused'), await count('resumed')], [1, 1]);
      } finally {
        await i.close();
      }
    });
  });
}

describe('reputation brake records on PostgreSQL only', { skip: pgFile.skip }, () => {
  test('a claim committed before its event was written gets the event at the next start, once; one that never reached PostgreSQL gets none', { timeout: 60_000 }, async () => {
    const i = await pgInstallation();
    let down = false;
    try {
      const a = await i.node();
      const dir = i.dir(0);
      // Node A as it was when it died: both claims noted in its LevelDB, only the first in PostgreSQL.
      await a.brake.stop();
      const held = { state: 'paused' as const, at: new Date().toISOString(), reason: 'reputation brake: test', claim: randomUUID() };
      const lost = { ...held, claim: randomUUID() };
      const p = openPool({ url: i.url, poolSize: 1, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
      await p.query('INSERT INTO brake_records (account, record) VALUES ($1, $2)', ['shop', JSON.stringify(held)]);
      await p.end();
      const note = (account: string, record: typeof held): { type: 'put'; key: string; value: Buffer } => ({
        type: 'put',
        key: `brake-claim!${account}`,
        value: Buffer.from(JSON.stringify({ record, event: { type: 'paused', account, reason: record.reason } })),
      });
      await i.close(); // the node (and the installation's pools) down
      down = true;
      const s = await Store.open(dir);
      await s.commit([note('shop', held), note('crm', lost)], { sync: true });
      const events = await EventLog.open(s);
      const q = openPool({ url: i.url, poolSize: 2, connectTimeoutSeconds: 2, queryTimeoutSeconds: 10 }, silent);
      const records = new PgBrakeRecords(q, s, events, silent);
      try {
        const all = await records.load();
        assert.deepEqual([...all.keys()], ['shop'], 'the claim that never reached PostgreSQL is not there');
        await records.load(); // again: settled once
        const written = await events.read(0, 1_000, (e) => e.type === 'paused');
        assert.deepEqual(written.map((e) => e.account), ['shop'], 'one `paused` event, for the claim PostgreSQL holds');
        let left = 0;
        for await (const _ of s.db.iterator({ gte: 'brake-claim!', lt: 'brake-claim~' })) left++;
        assert.equal(left, 0, 'both notes settled');
      } finally {
        await q.end();
        await s.close();
      }
    } finally {
      if (!down) await i.close();
    }
  });
});
