/*
 * The event feed's routes (engine/events/http-routes.ts) read the body's first chunk, which
 * holds the feed's first query, before they answer: when that query fails (PostgreSQL gone, or
 * a connection lost a moment ago), the client gets the error status, 503, that it can retry on,
 * not a connection cut before any byte (which it sees as a reset; the multi-node test's feed read
 * right after PostgreSQL came back failed so once). The feed here is a FeedSource whose first
 * scan fails as pg-feed.ts's does (sharedQuery's SHARED_STATE_UNAVAILABLE); routes, error handler
 * and HTTP are the real ones, over a socket.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { PostinoEvent } from '../../../common/events.js';
import { createHttpServer, listenHttp } from '../../../common/http-server.js';
import { createLogger } from '../../../common/log.js';
import { unavailable } from '../../../common/storage/postgres/pool.js';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import type { FeedSource } from '../../../engine/events/feed-source.js';
import { registerEventRoutes } from '../../../engine/events/http-routes.js';
import { MessageHistoryIndex } from '../../../engine/events/message-history.js';
import { tempDir } from '../../helpers/postino.js';

const KEY = 'feed-errors-test-key-'.padEnd(40, 'k');
const EVENTS: PostinoEvent[] = [1, 2, 3].map((seq) => ({ seq, id: `e${seq}`, type: 'delivered', at: new Date(1_796_400_000_000 + seq).toISOString(), account: 'acme', queueId: `Q${seq}`, recipient: `r${seq}@example.com`, metadata: { order: String(seq) } }));

/** Fails its next `failures` scans on their first read, as a lost PostgreSQL connection does. */
class FlakyFeed implements FeedSource {
  readonly scope = 'global';
  failures = 0;
  async top(): Promise<number> {
    return EVENTS.length;
  }
  async *scan(after: number, top: number): AsyncGenerator<PostinoEvent> {
    if (this.failures > 0) {
      this.failures--;
      throw unavailable(Object.assign(new Error('Connection terminated unexpectedly'), { code: undefined }), 'event feed');
    }
    for (const e of EVENTS) if (e.seq > after && e.seq <= top) yield e;
  }
}

let base: string;
let close: () => Promise<void>;
const feed = new FlakyFeed();

before(async () => {
  const store = await Store.open(path.join(tempDir('feed-errors'), 'hosted'));
  const events = await EventLog.open(store);
  const log = createLogger('test', 'silent');
  const app = createHttpServer(KEY, log);
  registerEventRoutes(app, { events, feed, history: new MessageHistoryIndex(store, events) });
  base = `http://127.0.0.1:${await listenHttp(app, { host: '127.0.0.1', port: 0, what: 'test', log })}`;
  close = async () => {
    await app.close();
    await store.close();
  };
});
after(async () => close());

const get = (route: string): Promise<Response> => fetch(`${base}${route}`, { headers: { authorization: `Bearer ${KEY}` } });

test('a feed whose first query fails answers 503 with its reason, and the next read gets the events', async () => {
  for (const route of ['/api/events?limit=100', '/api/events.csv?metadata=order']) {
    feed.failures = 1;
    const r = await get(route);
    assert.equal(r.status, 503, route);
    const body = (await r.json()) as { error: string; code: string };
    assert.equal(body.code, 'SHARED_STATE_UNAVAILABLE', route);
    assert.match(body.error, /unavailable for event feed/, route);
    const again = await get(route);
    assert.equal(again.status, 200, route);
    const text = await again.text();
    for (const e of EVENTS) assert.ok(text.includes(e.id), `${route}: ${e.id} in the retry's body`);
  }
  assert.deepEqual(
    (await (await get('/api/events?limit=100')).text()).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as PostinoEvent).seq),
    [1, 2, 3],
  );
});

test('an empty range answers 200 with an empty body', async () => {
  const r = await get(`/api/events?after=${EVENTS.length}`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), '');
});
