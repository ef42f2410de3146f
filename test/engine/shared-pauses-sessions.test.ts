/*
 * One suite, both backends, for the delivery kill-switch (engine/delivery/
 * delivery-pause.ts over pause-store.ts / pause-store-postgres.ts) and the
 * dashboard sessions (engine/dashboard/sessions.ts / sessions-postgres.ts):
 * LevelDB and memory as a single node has them, PostgreSQL in a cluster this
 * file starts, a fresh migrated database per test. Then what only several
 * nodes on one database have: a pause through node A holds on node B within
 * about a second and a resume through B frees A; a brake pause decided by A
 * holds on B and a resume through B reaches A's brake (each brake's records in
 * its own LevelDB here: the switch's path alone; the shared records are
 * reputation-brake-backends.test.ts); a session from A is
 * valid on B and a logout on B ends it on A; PostgreSQL stopped: the API
 * refuses (503), the paused stay paused (also across a restart), a brake pause
 * waits and is engaged when it returns. Last, two real hosted processes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig } from '../../common/config.js';
import type { EventInput } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { Store } from '../../common/store.js';
import { MemorySessionStore, type DashboardSessions } from '../../engine/dashboard/sessions.js';
import { PgSessionStore } from '../../engine/dashboard/sessions-postgres.js';
import { DeliveryPause } from '../../engine/delivery/delivery-pause.js';
import { PgPauseStore } from '../../engine/delivery/pause-store-postgres.js';
import { EventLog } from '../../engine/events/event-log.js';
import { indexEvents } from '../../engine/events/events-stage.js';
import { ReputationBrake } from '../../engine/events/reputation-brake.js';
import { DashboardClient } from '../helpers/dashboard-client.js';
import { until } from '../helpers/fake-clock.js';
import { startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { clusterForFile, shortPool as pool, migratedDatabase } from '../helpers/postgres.js';
import { CLI, tempDir, type Running } from '../helpers/postino.js';
import { readSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

const pgFile = clusterForFile();
const pgSkip = pgFile.skip;
const silent = createLogger('test', 'silent');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const freshDb = (): Promise<string> => migratedDatabase(pgFile.cluster());

/** One node's kill-switch: its own LevelDB, and (PostgreSQL) its own pool to the shared database. */
interface PauseNode {
  store: Store;
  pause: DeliveryPause;
  /** Closes the switch (and pool) but keeps the folder: `reopen` is the node's restart. */
  close(): Promise<void>;
  reopen(): Promise<PauseNode>;
}

async function pauseNode(backend: 'leveldb' | 'postgresql', url: string | undefined, dir = tempDir('pause-node')): Promise<PauseNode> {
  const store = await Store.open(dir);
  const p = url ? pool(url) : undefined;
  const pgStore = p ? new PgPauseStore(p, store, silent) : undefined;
  const pause = await DeliveryPause.open(store, pgStore);
  const node: PauseNode = {
    store,
    pause,
    async close() {
      await pause.close();
      await p?.end();
      await store.close();
    },
    async reopen() {
      await node.close();
      return pauseNode(backend, url, dir);
    },
  };
  return node;
}

const BACKENDS: Array<{ name: 'leveldb' | 'postgresql'; skip: string | undefined; url(): Promise<string | undefined>; sessions(url: string | undefined, idleMs: number): { s: DashboardSessions; close(): Promise<void> } }> = [
  {
    name: 'leveldb',
    skip: undefined,
    url: async () => undefined,
    sessions: (_url, idleMs) => ({ s: new MemorySessionStore(idleMs), close: async () => undefined }),
  },
  {
    name: 'postgresql',
    skip: pgSkip,
    url: freshDb,
    sessions(url, idleMs) {
      const p = pool(url!);
      return { s: new PgSessionStore(p, idleMs), close: () => p.end() };
    },
  },
];

for (const b of BACKENDS) {
  describe(`pauses and sessions on ${b.name}`, { skip: b.skip }, () => {
    test('a pause records why and by whom, holds one account or all, survives a restart; resume ends it', async () => {
      const url = await b.url();
      let n = await pauseNode(b.name, url);
      try {
        let changes = 0;
        n.pause.onChange(() => changes++);
        await n.pause.pause('shop', { reason: 'complaints', by: 'API (node key)' });
        assert.equal(n.pause.isPaused('shop'), true);
        assert.equal(n.pause.isPaused('crm'), false);
        assert.equal(changes, 1);
        await n.pause.pause(undefined, { reason: 'incident' });
        assert.equal(n.pause.isPaused('crm'), true, 'the global pause holds every account');
        n = await n.reopen();
        assert.deepEqual(n.pause.state(), { global: true, accounts: ['shop'] }, 'both switches survive the restart');
        const d = n.pause.details();
        assert.equal(d.global?.reason, 'incident');
        assert.deepEqual({ reason: d.accounts.shop?.reason, by: d.accounts.shop?.by }, { reason: 'complaints', by: 'API (node key)' });
        await n.pause.resume();
        assert.equal(n.pause.isPaused('crm'), false);
        assert.equal(n.pause.isPaused('shop'), true, 'the account pause outlives the global resume');
        await n.pause.resume('shop');
        n = await n.reopen();
        assert.deepEqual(n.pause.state(), { global: false, accounts: [] });
      } finally {
        await n.close();
      }
    });

    test('a session is found until logout or idleness; each use extends it; a wrong id is nobody', async () => {
      const { s, close } = b.sessions(await b.url(), 2_000);
      try {
        const a = await s.create({ kind: 'account', account: 'shop', keyId: 'k1' }, 'shop');
        const other = await s.create({ kind: 'node' }, 'operator');
        assert.notEqual(a.id, other.id);
        assert.deepEqual((await s.get(a.id))?.principal, { kind: 'account', account: 'shop', keyId: 'k1' });
        assert.equal((await s.get(a.id))?.csrf, a.session.csrf);
        assert.equal(await s.get('no-such-session'), undefined);
        assert.equal(await s.get(undefined), undefined);
        await s.destroy(other.id);
        assert.equal(await s.get(other.id), undefined, 'logged out');
        await sleep(1_000);
        assert.ok(await s.get(a.id), 'used within the idle limit');
        await sleep(1_200);
        assert.ok(await s.get(a.id), 'the last use counts, not the login');
        await sleep(2_500);
        assert.equal(await s.get(a.id), undefined, 'idle too long');
      } finally {
        await close();
      }
    });
  });
}

describe('several nodes on one PostgreSQL', { skip: pgSkip }, () => {
  test('a pause through node A holds on node B within about a second; a resume through B frees A', async () => {
    const url = await freshDb();
    const a = await pauseNode('postgresql', url);
    const b = await pauseNode('postgresql', url);
    try {
      let bChanges = 0;
      b.pause.onChange(() => bChanges++);
      const t0 = Date.now();
      await a.pause.pause('shop', { reason: 'incident 42', by: 'API (node key)' });
      await until(() => b.pause.isPaused('shop'), 'B sees the pause', 10_000);
      const seen = Date.now() - t0;
      console.log(`# a pause through node A held on node B after ${seen} ms (poll every 500 ms)`);
      assert.ok(bChanges >= 1, "B's listeners (the scheduler) were told");
      assert.equal(b.pause.details().accounts.shop?.reason, 'incident 42', 'with its reason');
      await b.pause.pause(undefined, { reason: 'all stop' });
      await until(() => a.pause.globalPaused, 'A sees the global pause', 10_000);
      await b.pause.resume('shop');
      await b.pause.resume();
      await until(() => !a.pause.isPaused('shop') && !a.pause.globalPaused, 'A sees both resumes', 10_000);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test("a node moving from LevelDB to PostgreSQL keeps its pauses, and shares them", async () => {
    const url = await freshDb();
    const dir = tempDir('pause-adopt');
    const single = await pauseNode('leveldb', undefined, dir);
    await single.pause.pause('shop', { reason: 'before the move' });
    await single.close();
    const moved = await pauseNode('postgresql', url, dir);
    const other = await pauseNode('postgresql', url);
    try {
      assert.deepEqual(moved.pause.state(), { global: false, accounts: ['shop'] });
      assert.equal(other.pause.details().accounts.shop?.reason, 'before the move', 'in PostgreSQL for the other nodes');
      // Resumed elsewhere while the moved node is down (its LevelDB copy still says paused).
      await moved.close();
      await other.pause.resume('shop');
      const again = await pauseNode('postgresql', url, dir);
      try {
        assert.equal(again.pause.isPaused('shop'), false, 'adopted once: a restart does not bring the old pause back');
      } finally {
        await again.close();
      }
    } finally {
      await other.close();
    }
  });

  test('a session from node A is valid on node B; a logout on B ends it on A', async () => {
    const url = await freshDb();
    const a = BACKENDS[1]!.sessions(url, 60_000);
    const b = BACKENDS[1]!.sessions(url, 60_000);
    try {
      const { id, session } = await a.s.create({ kind: 'node' }, 'operator');
      const onB = await b.s.get(id);
      assert.equal(onB?.label, 'operator');
      assert.equal(onB?.csrf, session.csrf, 'the same CSRF token on both nodes');
      await b.s.destroy(id);
      assert.equal(await a.s.get(id), undefined);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a brake pause decided by node A holds on node B; a resume through B reaches A\'s brake, also across A\'s restart', async () => {
    const url = await freshDb();
    const many = (n: number, e: EventInput): EventInput[] => Array.from({ length: n }, (_, i) => ({ ...e, recipient: `r${i}@example.com` }));
    const config = parseConfig({ events: { brake: { minMessages: 100 } } });
    const aDir = tempDir('brake-a');
    const openA = async (): Promise<{ n: PauseNode; events: EventLog; fold(): Promise<void>; brake: ReputationBrake }> => {
      const n = await pauseNode('postgresql', url, aDir);
      const events = await EventLog.open(n.store);
      const { stats } = indexEvents(n.store, events);
      const brake = new ReputationBrake({ store: n.store, events, stats, killSwitch: n.pause, config: config.events.brake, log: silent });
      await brake.start();
      return { n, events, brake, fold: () => stats.fold() };
    };
    let a = await openA();
    const b = await pauseNode('postgresql', url);
    const bEvents = await EventLog.open(b.store);
    const bBrake = new ReputationBrake({ store: b.store, events: bEvents, stats: indexEvents(b.store, bEvents).stats, killSwitch: b.pause, config: config.events.brake, log: silent });
    await bBrake.start();
    try {
      await a.events.append(many(200, { type: 'delivered', account: 'shop' }));
      await a.events.append(many(2, { type: 'complained', account: 'shop' }));
      await a.fold();
      await until(() => a.n.pause.isPaused('shop'), 'A paused', 5_000);
      await until(() => b.pause.isPaused('shop'), 'B holds the brake pause', 10_000);
      assert.equal(b.pause.details().accounts.shop?.by, 'reputation brake');
      assert.match(b.pause.details().accounts.shop?.reason ?? '', /^reputation brake: complaint rate 1\.00%/);
      assert.deepEqual(bBrake.state().map((x) => [x.account, x.state]), [['shop', 'paused']], "B's brake status lists A's pause");

      await b.pause.resume('shop');
      await until(async () => (await a.events.read(0, 10_000, (e) => e.type === 'resumed')).length === 1, "A's brake writes the resume made through B", 10_000);
      assert.deepEqual(bBrake.state(), []);
      assert.equal((await bEvents.read(0, 10_000, (e) => e.type === 'resumed' || e.type === 'paused')).length, 0, 'B decided nothing, so it records nothing');

      // Paused again; A stops; resumed through B while A is down; A notices at its start.
      await a.events.append(many(200, { type: 'delivered', account: 'shop' }));
      await a.events.append(many(100, { type: 'complained', account: 'shop' }));
      await a.fold();
      await until(() => b.pause.isPaused('shop'), 'paused again, seen by B', 10_000);
      await a.brake.stop();
      await a.n.close();
      await b.pause.resume('shop');
      a = await openA();
      await until(async () => (await a.events.read(0, 10_000, (e) => e.type === 'resumed')).length === 2, 'the resume made while A was down', 10_000);
      assert.equal(a.n.pause.isPaused('shop'), false, 'not paused again at the start');
      assert.deepEqual(a.brake.state(), []);
    } finally {
      await a.brake.stop();
      await bBrake.stop();
      await a.n.close();
      await b.close();
    }
  });

  test('PostgreSQL stopped: pause and resume refuse with 503, the paused stay paused (also across a restart), a brake pause is engaged once it is back', async () => {
    const url = await freshDb();
    const a = await pauseNode('postgresql', url);
    let b = await pauseNode('postgresql', url);
    const sessions = BACKENDS[1]!.sessions(url, 60_000);
    const many = (n: number, e: EventInput): EventInput[] => Array.from({ length: n }, (_, i) => ({ ...e, recipient: `r${i}@example.com` }));
    const config = parseConfig({ events: { brake: { minMessages: 100 } } });
    const events = await EventLog.open(a.store);
    const { stats } = indexEvents(a.store, events);
    const brake = new ReputationBrake({ store: a.store, events, stats, killSwitch: a.pause, config: config.events.brake, log: silent });
    await brake.start();
    const { id } = await sessions.s.create({ kind: 'node' }, 'operator');
    try {
      await a.pause.pause('shop', { reason: 'before the outage' });
      await until(() => b.pause.isPaused('shop'), 'B paused', 10_000);
      await pgFile.cluster().stop();

      const refused = async (p: Promise<unknown>, what: string): Promise<void> => {
        await assert.rejects(p, (e: unknown) => e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE' && e.httpStatus === 503, what);
      };
      await refused(a.pause.resume('shop'), 'a resume that cannot be kept');
      await refused(a.pause.pause('crm'), 'a pause that cannot be kept');
      assert.equal(a.pause.isPaused('shop'), true, 'nothing changed on A');
      assert.equal(a.pause.isPaused('crm'), false);
      await refused(sessions.s.get(id), 'a session that cannot be checked lets nobody in');
      await sleep(1_200); // at least two polls fail
      assert.equal(b.pause.isPaused('shop'), true, 'B keeps the last known pause');
      b = await b.reopen();
      assert.equal(b.pause.isPaused('shop'), true, 'and so does B restarted while PostgreSQL is down');

      // The brake decides while PostgreSQL is down: the pause waits, it is not read as a resume.
      await events.append(many(200, { type: 'delivered', account: 'crm' }));
      await events.append(many(2, { type: 'complained', account: 'crm' }));
      await stats.fold();
      await until(async () => (await events.read(0, 10_000, (e) => e.type === 'paused')).length === 1, 'the brake decided', 10_000);
      assert.equal(a.pause.isPaused('crm'), false, 'not engaged yet');

      await pgFile.cluster().start();
      await until(() => a.pause.isPaused('crm'), 'the brake pause engaged once PostgreSQL is back', 15_000);
      await until(() => b.pause.isPaused('crm'), 'and held on B', 10_000);
      assert.equal((await events.read(0, 10_000, (e) => e.type === 'resumed')).length, 0, 'never taken for a resume');
      assert.equal((await sessions.s.get(id))?.label, 'operator', 'the session is back too');
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await brake.stop();
      await sessions.close();
      await a.close();
      await b.close();
    }
  });
});

/** One message; the final reply. */
async function send(port: number, rcpt: string, testId: string): Promise<void> {
  const c = await RawSmtp.connect(port, '127.0.0.1');
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250/);
    assert.match(await c.cmd(`RCPT TO:<${rcpt}>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    assert.match(await c.cmd(`From: shop@example.org\r\nTo: ${rcpt}\r\nSubject: hi\r\nX-Test-Id: ${testId}\r\n\r\nhello\r\n.`), /^250/);
  } finally {
    c.close();
  }
}

test('two hosted processes on one PostgreSQL: paused through A, B delivers nothing until resumed through B; a dashboard session from A works on B', { skip: pgSkip, timeout: 120_000 }, async () => {
  const url = await freshDb();
  const root = tempDir('shared-pause');
  const { sink, sinkDir } = await startTestSink(root);
  const storage = { postgres: { url, connectTimeoutSeconds: 2, queryTimeoutSeconds: 5 } };
  const accounts = [{ id: 'default', networks: ['127.0.0.1/32'], listener: { requireTls: false } }];
  const extra = { storage, accounts, delivery: { relays: [`smtp://127.0.0.1:${sink.port}`], pausedRecheckSeconds: 1 } };
  const nodes: Running[] = [];
  try {
    const a = await hostedConfig(sink.port, extra);
    const b = await hostedConfig(sink.port, extra);
    const dir = (n: string): string => {
      fs.mkdirSync(path.join(root, n));
      return path.join(root, n);
    };
    const aDir = dir('a');
    const bDir = dir('b');
    nodes.push(await startHostedProcess(aDir, a.config), await startHostedProcess(bDir, b.config));
    const base = (cfg: Record<string, unknown>): string => `http://127.0.0.1:${(cfg.http as { port: number }).port}`;
    const key = (d: string): string => fs.readFileSync(path.join(d, 'secrets', 'api-key'), 'utf8').trim();
    const api = (cfg: Record<string, unknown>, d: string) => (route: string, method = 'GET') => fetch(base(cfg) + route, { method, headers: { authorization: `Bearer ${key(d)}` } });
    const apiA = api(a.config, aDir);
    const apiB = api(b.config, bDir);
    // Each node made its own token and pseudonym keys (nothing copied): each names the other as different.
    const nodesOn = async (call: typeof apiA): Promise<Array<{ self: boolean; secretsDiffer?: boolean }>> => ((await (await call('/api/queue')).json()) as { nodes: Array<{ self: boolean; secretsDiffer?: boolean }> }).nodes;
    await until(async () => (await nodesOn(apiA)).length === 2, 'both nodes listed', 15_000);
    assert.deepEqual((await nodesOn(apiA)).map((n) => [n.self, n.secretsDiffer]).sort(), [[false, true], [true, false]]);
    const statusA = spawnSync(process.execPath, [CLI, 'hosted', 'status', '--api', base(a.config)], { encoding: 'utf8', env: { ...process.env, POSTINO_DATA: aDir } });
    assert.match(statusA.stdout, /SECRETS DIFFER: .*copy data\/secrets to every node/, statusA.stdout);
    const pausedOn = async (call: typeof apiA): Promise<string[]> => ((await (await call('/api/queue')).json()) as { delivery: { paused: { accounts: string[] } } }).delivery.paused.accounts;

    const paused = await apiA('/api/pause?account=default&reason=incident', 'POST');
    assert.equal(paused.status, 200, await paused.clone().text());
    const t0 = Date.now();
    await until(async () => (await pausedOn(apiB)).includes('default'), "the pause in B's status", 10_000);
    console.log(`# hosted: a pause through node A's API in node B's status after ${Date.now() - t0} ms`);
    await send(b.listenerPort, 'held@example.com', 'held-on-b');
    await sleep(2_000); // B's delivery worker would have sent it long before this (the sink is local)
    assert.equal(readSink(sinkDir).filter((x) => x.testId === 'held-on-b').length, 0, 'B sends nothing for the account paused through A');

    const resumed = await apiB('/api/resume?account=default', 'POST');
    assert.equal(resumed.status, 200);
    await until(() => readSink(sinkDir).some((x) => x.testId === 'held-on-b'), 'delivered once resumed through B', 30_000);
    await until(async () => (await pausedOn(apiA)).length === 0, 'resumed on A too', 10_000);

    // The dashboard: logged in on A, the cookie works on B (the balancer may send the next request there); a logout on B ends it on A.
    const onA = await DashboardClient.login(base(a.config), '', key(aDir));
    const onB = Object.assign(Object.create(Object.getPrototypeOf(onA) as object) as DashboardClient, { ...onA, base: base(b.config) });
    const page = await onB.get('/');
    assert.equal(page.status, 200, 'the session from A is valid on B');
    assert.equal((await onB.post('/logout', {})).status, 303);
    const after = await onA.get('/');
    assert.equal(after.status, 303, 'logged out on A too');
    assert.equal(after.headers.get('location'), '/login');
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await sink.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
