/*
 * Webhook endpoints added through the API (engine/events/webhooks.ts) over
 * both stores: this node's LevelDB (webhook-endpoints.ts) and PostgreSQL
 * (webhook-endpoints-postgres.ts) in a cluster this file starts. Then two
 * dispatchers on one database, each posting its own node's events: an
 * endpoint added through A gets B's events, one deleted through B stops on A;
 * PostgreSQL stopped: adding and deleting refuse with 503 and change nothing,
 * both nodes keep posting to what they had, also across a restart.
 * Real LevelDB, real HTTP receiver.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import type { PostinoEvent } from '../../../common/events.js';
import { PostinoError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { migrate } from '../../../common/storage/postgres/migrations.js';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { PgWebhookEndpoints } from '../../../engine/events/webhook-endpoints-postgres.js';
import { WebhookDispatcher } from '../../../engine/events/webhooks.js';
import { until } from '../../helpers/fake-clock.js';
import { clusterForFile, shortPool as pool } from '../../helpers/postgres.js';
import { tempDir } from '../../helpers/postino.js';

const pgFile = clusterForFile();
const silent = createLogger('test', 'silent');
const config = parseConfig({ accounts: [{ id: 'shop' }], events: { webhooks: { batchWaitMs: 0, retrySeconds: [0.2] } } });

/** Every event posted to the receiver, by recipient (the tests name each event's recipient). */
const received: string[] = [];
let hookUrl = '';
let server: http.Server;
before(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: { events?: PostinoEvent[] } };
      for (const e of body.data.events ?? []) received.push(String(e.recipient));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`;
});
after(() => server.close());

interface HookNode {
  events: EventLog;
  hooks: WebhookDispatcher;
  /** One event of the shop account, to `rcpt`. */
  emit(rcpt: string): Promise<void>;
  close(): Promise<void>;
}

async function hookNode(url: string | undefined, dir = tempDir('hook-node')): Promise<HookNode> {
  const store = await Store.open(dir);
  const events = await EventLog.open(store);
  const p = url ? pool(url) : undefined;
  const endpoints = p ? new PgWebhookEndpoints(p, store, silent) : undefined;
  const hooks = new WebhookDispatcher({ store, events, endpoints, config: config.events.webhooks, accounts: config.accounts, env: {}, log: silent });
  await hooks.start();
  return {
    events,
    hooks,
    emit: async (rcpt) => void (await events.append([{ type: 'delivered', account: 'shop', recipient: rcpt }])),
    async close() {
      await hooks.stop();
      await p?.end();
      await store.close();
    },
  };
}

const BACKENDS = [
  { name: 'leveldb', skip: undefined, url: async (): Promise<string | undefined> => undefined },
  {
    name: 'postgresql',
    skip: pgFile.skip,
    async url(): Promise<string | undefined> {
      const url = await pgFile.cluster().newDatabase();
      const p = pool(url);
      await migrate(p);
      await p.end();
      return url;
    },
  },
];

for (const b of BACKENDS) {
  describe(`API webhook endpoints on ${b.name}`, { skip: b.skip }, () => {
    test('an endpoint added gets the events from then on, is still there after a restart, and gets nothing once deleted', async () => {
      const url = await b.url();
      const dir = tempDir('hooks-kept');
      let n = await hookNode(url, dir);
      try {
        await n.emit(`${b.name}-before@example.com`);
        const { id, secret } = await n.hooks.add('shop', hookUrl, []);
        assert.match(secret, /^whsec_/);
        await n.emit(`${b.name}-1@example.com`);
        await until(() => received.includes(`${b.name}-1@example.com`), 'the event posted', 10_000);
        assert.equal(received.includes(`${b.name}-before@example.com`), false, 'a new endpoint starts at the end of the log');
        await n.close();
        n = await hookNode(url, dir);
        assert.deepEqual(n.hooks.list('shop').map((w) => [w.id, w.source]), [[id, 'api']]);
        await n.emit(`${b.name}-2@example.com`);
        await until(() => received.includes(`${b.name}-2@example.com`), 'posted after the restart', 10_000);
        await n.hooks.remove('shop', id);
        await n.close();
        n = await hookNode(url, dir);
        assert.deepEqual(n.hooks.list('shop'), []);
      } finally {
        await n.close();
      }
    });
  });
}

test('two nodes on one PostgreSQL: an endpoint added through A gets B\'s events, one deleted through B stops on A; PostgreSQL stopped: 503, and both keep posting to what they had', { skip: pgFile.skip, timeout: 60_000 }, async () => {
  const url = (await BACKENDS[1]!.url())!;
  const a = await hookNode(url);
  const bDir = tempDir('hooks-b');
  let b = await hookNode(url, bDir);
  try {
    const t0 = Date.now();
    const first = await a.hooks.add('shop', hookUrl, []);
    await until(() => b.hooks.list('shop').length === 1, "the endpoint in B's list", 10_000);
    console.log(`# a webhook endpoint added through node A listed on node B after ${Date.now() - t0} ms`);
    await b.emit('from-b@example.com');
    await a.emit('from-a@example.com');
    await until(() => received.includes('from-b@example.com') && received.includes('from-a@example.com'), "both nodes' events posted", 10_000);

    // Deleted through B: A stops too.
    const second = await a.hooks.add('shop', `${hookUrl}?second`, []);
    await until(() => b.hooks.list('shop').length === 2, 'the second endpoint on B', 10_000);
    await b.hooks.remove('shop', first.id);
    await until(() => a.hooks.list('shop').map((w) => w.id).join() === second.id, 'the deleted endpoint gone from A', 10_000);
    const before = received.length;
    await a.emit('after-delete@example.com');
    await until(() => received.length === before + 1, 'posted once, to the remaining endpoint', 10_000);

    await pgFile.cluster().stop();
    const refused = (e: unknown): boolean => e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE' && e.httpStatus === 503;
    await assert.rejects(a.hooks.add('shop', `${hookUrl}?third`, []), refused);
    await assert.rejects(b.hooks.remove('shop', second.id), refused);
    assert.deepEqual([a.hooks.list('shop').length, b.hooks.list('shop').length], [1, 1], 'nothing changed on either node');
    await b.close();
    b = await hookNode(url, bDir);
    assert.deepEqual(b.hooks.list('shop').map((w) => w.id), [second.id], 'B restarted while PostgreSQL is down keeps the endpoint it last read');
    await b.emit('outage-b@example.com');
    await a.emit('outage-a@example.com');
    await until(() => received.includes('outage-b@example.com') && received.includes('outage-a@example.com'), 'both nodes keep posting', 10_000);
  } finally {
    if (pgFile.cluster().pid === undefined) await pgFile.cluster().start();
    await a.close();
    await b.close();
  }
});
