/*
 * The accounts API's changes (engine/accounts/account-service.ts) over both
 * stores: LevelDB as a single node has it (account-store.ts) and PostgreSQL
 * (account-store-postgres.ts) in a cluster this file starts, a fresh migrated
 * database per test. Then what only several nodes on one database have: a
 * user added through node A is in node B's accounts within about a second
 * (B's AccountsSnapshot swaps, as the listener and API keys need); two nodes
 * changing one account at once both keep their change; PostgreSQL stopped: a
 * change refuses with 503 and changes nothing, each node keeps its accounts,
 * also across a restart; a node that ran on LevelDB brings its changes along.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AccountsSnapshot } from '../../../common/accounts-snapshot.js';
import { parseConfig, type Config } from '../../../common/config.js';
import { PostinoError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { AccountService } from '../../../engine/accounts/account-service.js';
import { LevelAccountStore } from '../../../engine/accounts/account-store.js';
import { PgAccountStore } from '../../../engine/accounts/account-store-postgres.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { until } from '../../helpers/fake-clock.js';
import { clusterForFile, shortPool as pool, migratedDatabase } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/postino.js';

const pgFile = clusterForFile();
const silent = createLogger('test', 'silent');
const NODE = { kind: 'node' } as const;
/** A password hash of the form the schema takes; these tests never verify one. */
const HASH = 'scrypt$1024$8$1$AkyBTgjr9XubyijvkGJimA==$gH0vvxfrVjeh2mYSNVO8Ug2LN1GKdAIM5cENmiaevkM=';

const config: Config = parseConfig({
  accounts: [
    { id: 'shop', networks: ['10.0.0.1/32'], listener: { requireTls: false } },
    { id: 'crm', networks: ['10.0.0.2/32'], listener: { requireTls: false } },
  ],
});

const freshDb = (): Promise<string> => migratedDatabase(pgFile.cluster());

interface AccountNode {
  store: Store;
  events: EventLog;
  snapshot: AccountsSnapshot;
  service: AccountService;
  users(account?: string): string[];
  networks(account?: string): string[];
  close(): Promise<void>;
}

/** One node's accounts: its own LevelDB and, with `url`, its own pool to the shared database. */
async function accountNode(url: string | undefined, dir = tempDir('account-node')): Promise<AccountNode> {
  const store = await Store.open(dir);
  const events = await EventLog.open(store);
  const p = url ? pool(url) : undefined;
  const pg = p ? new PgAccountStore(p, store, events, silent) : undefined;
  const snapshot = new AccountsSnapshot(config.accounts);
  const service = await AccountService.open({ config, store: pg ?? new LevelAccountStore(store, events), snapshot, log: silent });
  const of = (id: string): Config['accounts'][number] => snapshot.current.find((a) => a.id === id)!;
  return {
    store,
    events,
    snapshot,
    service,
    users: (id = 'shop') => of(id).listener.users.map((u) => u.username),
    networks: (id = 'shop') => [...of(id).networks],
    async close() {
      await pg?.close();
      await p?.end();
      await store.close();
    },
  };
}

const BACKENDS = [
  { name: 'leveldb', skip: undefined, url: async (): Promise<string | undefined> => undefined },
  { name: 'postgresql', skip: pgFile.skip, url: freshDb },
];

for (const b of BACKENDS) {
  describe(`account changes on ${b.name}`, { skip: b.skip }, () => {
    test('a change is kept with its account.changed event, survives a restart, and the history lists it newest first', async () => {
      const url = await b.url();
      const dir = tempDir('accounts-kept');
      let n = await accountNode(url, dir);
      try {
        const r = await n.service.edit('shop', { part: 'users', action: 'add', user: { username: 'app', passwordHash: HASH } }, NODE);
        assert.equal(r.event?.type, 'account.changed');
        await n.service.edit('shop', { part: 'networks', action: 'add', item: '10.0.0.9/32' }, { kind: 'account', account: 'shop', keyId: 'k1' });
        assert.equal((await n.service.edit('shop', { part: 'networks', action: 'add', item: '10.0.0.9/32' }, NODE)).event, undefined, 'adding what is there changes nothing');
        await n.close();
        n = await accountNode(url, dir);
        assert.deepEqual(n.users(), ['app']);
        assert.deepEqual(n.networks(), ['10.0.0.1/32', '10.0.0.9/32']);
        const h = await n.service.history('shop', 10);
        assert.deepEqual(h.map((e) => [e.change?.part, e.change?.action, e.actor]), [['networks', 'add', 'key:k1'], ['users', 'add', 'node']]);
        assert.equal(JSON.stringify(h).includes(HASH), false, 'no password hash in the history');
        assert.equal((await n.events.read(0, 10, (e) => e.type === 'account.changed')).length, 2, 'each change in the node log (the feed)');
        await assert.rejects(n.service.edit('nope', { part: 'networks', action: 'add', item: '10.0.0.3/32' }, NODE), (e: unknown) => e instanceof PostinoError && e.httpStatus === 404);
      } finally {
        await n.close();
      }
    });
  });
}

describe('several nodes on one PostgreSQL', { skip: pgFile.skip }, () => {
  test("a user added through node A is in node B's accounts within about a second; two nodes changing one account at once both keep their change", async () => {
    const url = await freshDb();
    const a = await accountNode(url);
    const b = await accountNode(url);
    try {
      let swaps = 0;
      b.snapshot.onSwap(() => swaps++);
      const t0 = Date.now();
      await a.service.edit('shop', { part: 'users', action: 'add', user: { username: 'app', passwordHash: HASH } }, NODE);
      await until(() => b.users().includes('app'), "the user in B's accounts", 10_000);
      console.log(`# a user added through node A in node B's accounts after ${Date.now() - t0} ms`);
      assert.ok(swaps >= 1, "B's snapshot swapped (the listener and API keys follow it)");
      assert.deepEqual(b.users('crm'), [], 'other accounts untouched');

      // Both change the account before either has seen the other's change: neither is lost.
      await Promise.all([
        a.service.edit('shop', { part: 'networks', action: 'add', item: '10.0.0.7/32' }, NODE),
        b.service.edit('shop', { part: 'networks', action: 'add', item: '10.0.0.8/32' }, NODE),
      ]);
      const both = ['10.0.0.1/32', '10.0.0.7/32', '10.0.0.8/32'];
      await until(() => JSON.stringify([...a.networks()].sort()) === JSON.stringify(both) && JSON.stringify([...b.networks()].sort()) === JSON.stringify(both), 'both networks on both nodes', 10_000);
      assert.deepEqual((await a.service.history('shop', 10)).length, 3, "one history for the account, whichever node was asked");

      // A removal through B reaches A.
      await b.service.edit('shop', { part: 'users', action: 'remove', item: 'app' }, NODE);
      await until(() => !a.users().includes('app'), 'the user removed on A', 10_000);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('PostgreSQL stopped: a change refuses with 503 and changes nothing; each node keeps its accounts, also across a restart; changes flow again once it is back', async () => {
    const url = await freshDb();
    const a = await accountNode(url);
    const bDir = tempDir('accounts-b');
    let b = await accountNode(url, bDir);
    try {
      await a.service.edit('shop', { part: 'users', action: 'add', user: { username: 'app', passwordHash: HASH } }, NODE);
      await until(() => b.users().includes('app'), 'B has the user', 10_000);
      await pgFile.cluster().stop();
      const version = a.snapshot.version;
      await assert.rejects(a.service.edit('shop', { part: 'networks', action: 'add', item: '10.0.0.5/32' }, NODE), (e: unknown) => e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE' && e.httpStatus === 503);
      assert.equal(a.snapshot.version, version, 'nothing swapped on A');
      assert.deepEqual(a.networks(), ['10.0.0.1/32']);
      assert.equal((await a.events.read(0, 10, (e) => e.type === 'account.changed' && e.change?.part === 'networks')).length, 0, 'no event for a change not kept');
      await new Promise((r) => setTimeout(r, 1_200)); // at least two polls fail
      assert.deepEqual(b.users(), ['app'], 'B keeps the accounts it last read');
      await b.close();
      b = await accountNode(url, bDir);
      assert.deepEqual(b.users(), ['app'], 'and so does B restarted while PostgreSQL is down');

      await pgFile.cluster().start();
      await a.service.edit('shop', { part: 'networks', action: 'add', item: '10.0.0.5/32' }, NODE);
      await until(() => b.networks().includes('10.0.0.5/32'), 'a change after the outage reaches B', 15_000);
    } finally {
      if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
      await a.close();
      await b.close();
    }
  });

  test("a node that ran on LevelDB brings its changes to PostgreSQL once; the database's own rows win", async () => {
    const url = await freshDb();
    const dir = tempDir('accounts-moved');
    const single = await accountNode(undefined, dir);
    await single.service.edit('crm', { part: 'senderDomains', action: 'add', item: 'crm.example' }, NODE);
    await single.close();
    const other = await accountNode(url);
    try {
      const moved = await accountNode(url, dir);
      assert.deepEqual(moved.snapshot.current.find((x) => x.id === 'crm')!.listener.senderDomains, ['crm.example']);
      assert.equal((await moved.service.history('crm', 10)).length, 1, 'its history came along');
      await until(() => other.snapshot.current.find((x) => x.id === 'crm')!.listener.senderDomains.includes('crm.example'), 'the other node has it', 10_000);
      await moved.close();
    } finally {
      await other.close();
    }
  });
});
