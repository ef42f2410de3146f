/*
 * pg-feed.ts — the global event feed in PostgreSQL, as the DataExporter reads
 * it (feed-source.ts) on a node with storage.postgres: every node's events,
 * shipped by each node (event-shipper.ts), in one order, the same through
 * every node.
 *
 * `top()` is the committed feed counter: the shippers hand out seqs in commit
 * order (see event-shipper.ts), so every row at or below it is committed and
 * visible to the next statement; a reader that stops at it and resumes after
 * its last seq never misses a row that a slower node commits later. `scan()`
 * pages through (after, top] by the seq index, PAGE rows a query, so a feed of
 * millions never sits in memory; `account` narrows in the query.
 *
 * `eraseRecipient()`: a deleted recipient's address out of every node's copies
 * (the same rewrite as this node's log gets, erase-recipient.ts).
 *
 * Side effects: PostgreSQL reads; the erasure's updates.
 */
import { caseFoldedEmail } from '../../common/address.js';
import type { PostinoEvent } from '../../common/events.js';
import { sharedQuery, sharedTransaction, type PgPool } from '../../common/storage/postgres/pool.js';
import { eraseInEvent } from './erase-recipient.js';
import type { FeedSource } from './feed-source.js';

/** Rows per query of a scan: a round trip per thousand events. */
const PAGE = 1_000;

export class PgFeed implements FeedSource {
  readonly scope = 'global';

  constructor(private readonly pool: PgPool) {}

  async top(): Promise<number> {
    const r = await sharedQuery<{ last: string }>(this.pool, 'event feed', 'SELECT last FROM event_feed_counter WHERE id = 1');
    return r.rows[0] ? Number(r.rows[0].last) : 0;
  }

  /** `node` narrows to the events one node shipped (its webhooks post its own events, each once). */
  async *scan(after: number, top: number, account?: string, node?: string): AsyncGenerator<PostinoEvent> {
    const where = ['seq > $1', 'seq <= $2'];
    const values: unknown[] = [0, top, PAGE];
    if (account !== undefined) where.push(`account = $${values.push(account)}`);
    if (node !== undefined) where.push(`node = $${values.push(node)}`);
    const text = `SELECT body FROM events WHERE ${where.join(' AND ')} ORDER BY seq LIMIT $3`;
    let cursor = after;
    while (cursor < top) {
      values[0] = cursor;
      const r = await sharedQuery<{ body: PostinoEvent }>(this.pool, 'event feed', text, values);
      for (const row of r.rows) yield row.body;
      if (r.rows.length < PAGE) return;
      cursor = r.rows[r.rows.length - 1]!.body.seq;
    }
  }

  /**
   * Replaces a deleted recipient's address by its pseudonym in every stored event of the account
   * whose recipient it is, whichever node shipped it; the number of events rewritten. Reads the
   * account's events by its index and matches the address as the node's eraser does.
   */
  async eraseRecipient(account: string, address: string, pseudonym: string): Promise<number> {
    const folded = caseFoldedEmail(address);
    const r = await sharedQuery<{ at: Date; seq: string; body: PostinoEvent }>(this.pool, 'event erasure', `SELECT at, seq, body FROM events WHERE account = $1 AND lower(body->>'recipient') = lower($2)`, [account, address]);
    const rows = r.rows.filter((x) => x.body.recipient && caseFoldedEmail(x.body.recipient) === folded);
    for (let i = 0; i < rows.length; i += PAGE) {
      const chunk = rows.slice(i, i + PAGE);
      await sharedTransaction(this.pool, 'event erasure', (c) =>
        c.query('UPDATE events AS e SET body = v.body FROM unnest($1::timestamptz[], $2::bigint[], $3::jsonb[]) AS v(at, seq, body) WHERE e.at = v.at AND e.seq = v.seq', [
          chunk.map((x) => x.at),
          chunk.map((x) => x.seq),
          chunk.map((x) => JSON.stringify(eraseInEvent(x.body, address, pseudonym))),
        ]),
      );
    }
    return rows.length;
  }
}
