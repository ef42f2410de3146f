/*
 * http-routes.ts — the DataExporter (DESIGN.md, Events), bearer API key:
 *   GET /api/events       NDJSON, oldest first, resumable by `seq`
 *   GET /api/events.csv   the same as CSV (events-csv.ts)
 *   GET /api/messages/<queue id or Message-ID>   one message's history (message-history.ts)
 * Query of both feeds: feed-filter.ts. A client keeps the last `seq` it saw
 * and asks for `after=<that>`; events never appear out of order or late
 * (event-log.ts watermark), and seqs are durable, so this holds across a
 * restart of the node too. `account=<id>` narrows to one account; an
 * account's API key sees its own account only (accountScope: naming another is 403).
 *
 * `recipient=<address>` reads through the recipient index (recipient-index.ts):
 * the cost is that recipient's events, not the log's.
 * With storage.postgres the feeds read the global feed (feed-source.ts,
 * pg-feed.ts): every node's events, `seq` the global order, the same through
 * every node; the recipient index (this node's) does not apply there.
 * Both feeds stream off a LevelDB iterator in chunks of about CHUNK_BYTES
 * with the socket's back-pressure, so a response of a million events holds
 * one chunk in memory, not the million.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import type { EventLog } from './event-log.js';
import type { FeedSource } from './feed-source.js';
import { EventCsv, MAX_METADATA_COLUMNS } from './events-csv.js';
import { parseFeedQuery, type FeedQuery } from './feed-filter.js';
import type { MessageHistoryIndex } from './message-history.js';
import { recipientIndexOf } from './recipient-index.js';

/** Lines are gathered into chunks of about this size before they go to the socket (fewer writes, bounded memory). */
const CHUNK_BYTES = 64 * 1024;

function requestedAccount(req: FastifyRequest): string | undefined {
  const a = ((req.query ?? {}) as Record<string, unknown>).account;
  return typeof a === 'string' && a !== '' ? a : undefined;
}

/**
 * Matching events of one request, at most `limit`, up to the watermark at its start.
 * With `recipient=`, through the recipient index once it is complete (only that
 * recipient's events are read, in the same seq order); otherwise a scan of the log.
 */
async function* matching(events: EventLog, feed: FeedSource | undefined, q: FeedQuery, top: number): AsyncGenerator<PostinoEvent> {
  let n = 0;
  const index = q.recipient === undefined || feed?.scope === 'global' ? undefined : recipientIndexOf(events);
  const source =
    index && q.recipient !== undefined ? index.read(q.account, q.recipient, { after: q.after, before: top + 1, reverse: false }) : feed ? feed.scan(q.after, top, q.account) : events.scan(q.after, top);
  for await (const e of source) {
    if (!q.keep(e)) continue;
    yield e;
    if (++n >= q.limit) return;
  }
}

async function* chunked(lines: AsyncIterable<string>, head = ''): AsyncGenerator<string> {
  let buf = head;
  for await (const l of lines) {
    buf += l;
    if (buf.length >= CHUNK_BYTES) {
      yield buf;
      buf = '';
    }
  }
  if (buf) yield buf;
}

async function* map<T, U>(it: AsyncIterable<T>, fn: (t: T) => U): AsyncGenerator<U> {
  for await (const t of it) yield fn(t);
}

/**
 * The response body with its first chunk read before the reply is sent. Why: once a streamed
 * reply is sent its status and headers are committed, and a read that fails then can only cut
 * the connection, which a client sees as a reset with no status (the multi-node test's feed read
 * right after PostgreSQL came back failed so, once in a CI run). The first chunk holds the feed's
 * first query; an error there (PostgreSQL unavailable: 503) becomes the error response a client
 * can retry on. An error further on still cuts the stream, after the events sent so far.
 * An iterator object, not a generator around `body`: a stream destroyed before its first read (the
 * client gone) returns the iterator it was made from, and a generator not yet started would end
 * without returning `body`, leaving the feed's scan (a LevelDB iterator) open.
 */
export async function primed(body: AsyncGenerator<string>): Promise<Readable> {
  let first: IteratorResult<string> | undefined = await body.next();
  const whole: AsyncIterableIterator<string> = {
    next() {
      const r = first;
      first = undefined;
      return r ? Promise.resolve(r) : body.next();
    },
    return: (value?: unknown) => body.return(value),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
  return Readable.from(whole, { objectMode: false });
}

export interface EventRouteDeps {
  events: EventLog;
  /** Where the feeds read (the global feed with storage.postgres); absent: `events`. */
  feed?: FeedSource | undefined;
  history: MessageHistoryIndex;
  /** Feed readers' progress, for the lag gauge (metrics.ts); called with the last seq each response reached. */
  onRead?: (account: string | undefined, lastSeq: number) => void;
}

export function registerEventRoutes(app: FastifyInstance, d: EventRouteDeps): void {
  const { events, feed } = d;
  const topNow = async (): Promise<number> => (feed ? feed.top() : events.watermark);
  const track = (account: string | undefined, it: AsyncIterable<PostinoEvent>): AsyncGenerator<PostinoEvent> =>
    map(it, (e) => {
      d.onRead?.(account, e.seq);
      return e;
    });

  app.get('/api/events', async (req, reply) => {
    const q = parseFeedQuery(req.query, accountScope(req, requestedAccount(req)));
    const body = chunked(map(track(q.account, matching(events, feed, q, await topNow())), (e) => JSON.stringify(e) + '\n'));
    return reply.type('application/x-ndjson').send(await primed(body));
  });

  app.get('/api/events.csv', async (req, reply) => {
    const query = (req.query ?? {}) as Record<string, unknown>;
    const q = parseFeedQuery(query, accountScope(req, requestedAccount(req)));
    const top = await topNow();
    let keys: string[];
    if (typeof query.metadata === 'string' && query.metadata !== '') {
      keys = query.metadata.split(',').map((k) => k.trim()).filter(Boolean);
      if (keys.length > MAX_METADATA_COLUMNS) throw new PostinoError('BAD_REQUEST', `at most ${MAX_METADATA_COLUMNS} metadata columns`);
    } else {
      // A first pass over the same range, for the header row (see events-csv.ts).
      const seen = new Set<string>();
      for await (const e of matching(events, feed, q, top)) {
        for (const k of Object.keys(e.metadata ?? {})) if (seen.size < MAX_METADATA_COLUMNS) seen.add(k);
      }
      keys = [...seen].sort();
    }
    const csv = new EventCsv(keys);
    const body = chunked(map(track(q.account, matching(events, feed, q, top)), (e) => csv.row(e)), csv.header());
    return reply.type('text/csv; charset=utf-8').send(await primed(body));
  });

  app.get('/api/messages/:id', async (req) => {
    const { id } = req.params as { id: string };
    if (!id || id.length > 998) throw new PostinoError('BAD_REQUEST', 'a queue id or Message-ID is needed');
    const account = accountScope(req, requestedAccount(req));
    const messages = await d.history.lookup(id, account);
    if (messages.length === 0) throw new PostinoError('NOT_FOUND', `no message "${id}"${account ? ` in account "${account}"` : ''}`);
    return { messages };
  });
}
