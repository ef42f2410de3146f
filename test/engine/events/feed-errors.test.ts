/*
 * The event feed's routes (engine/events/http-routes.ts) read the body's first chunk, which
 * holds the feed's first query, before they answer: when that query fails (PostgreSQL gone, or
 * a connection lost a moment ago), the client gets the error status, 503, that it can retry on,
 * not a connection cut before any byte (which it sees as a reset; the multi-node test's feed read
 * right after PostgreSQL came back failed so once). The feed here is a FeedSource whose first
 * scan fails as pg-feed.ts's does (sharedQuery's SHARED_STATE_UNAVAILABLE); routes, error handler
 * and HTTP are the real ones, over a socket. `primed()` itself is also held to closing the feed's
 * body when its stream is destroyed before the first read (a client gone), as the stream it replaced did.
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
import { primed, registerEventRoutes } from '../../../engine/events/http-routes.js';
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

/** A feed body that records whether it was returned (its scan closed) and how far it was read. */
function recordingBody(chunks: string[]): { body: AsyncGenerator<string>; closed: () => boolean; read: () => number } {
  let closed = false;
  let read = 0;
  async function* body(): AsyncGenerator<string> {
    try {
      for (const c of chunks) {
        read++;
        yield c;
      }
    } finally {
      closed = true;
    }
  }
  return { body: body(), closed: () => closed, read: () => read };
}

const drain = async (r: NodeJS.ReadableStream): Promise<string> => {
  let out = '';
  for await (const c of r) out += String(c);
  return out;
};

test('primed(): the first chunk is read before the stream exists, then every chunk in order, once', async () => {
  const b = recordingBody(['a', 'b', 'c']);
  const stream = await primed(b.body);
  assert.equal(b.read(), 1, 'the first chunk read before the reply');
  assert.equal(await drain(stream), 'abc');
  assert.equal(b.closed(), true);
  assert.equal(await drain(await primed(recordingBody([]).body)), '', 'an empty body: an empty stream');
});

test('primed(): a stream destroyed before its first read (the client gone) still closes the feed body', async () => {
  const b = recordingBody(['a', 'b', 'c']);
  const stream = await primed(b.body);
  stream.destroy();
  await new Promise<void>((resolve) => stream.once('close', () => resolve()));
  for (let i = 0; i < 20 && !b.closed(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(b.closed(), true, "the body's finally ran: its scan is not left open");
  assert.equal(b.read(), 1, 'nothing read past the first chunk');
});

test('primed(): a first read that fails rejects, so the route answers with the error', async () => {
  async function* failing(): AsyncGenerator<string> {
    throw unavailable(new Error('Connection terminated unexpectedly'), 'event feed');
  }
  await assert.rejects(primed(failing()), /unavailable for event feed/);
});
