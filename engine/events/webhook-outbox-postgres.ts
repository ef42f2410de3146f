/*
 * webhook-outbox-postgres.ts — the webhooks' outbox shared by the nodes of one
 * PostgreSQL (storage.postgres), so a node that never comes back still gets
 * its events posted (webhooks.ts runs the loops; this is their rows).
 *
 * One row per endpoint (account, endpoint id) and origin node (the node that
 * shipped the events to the global feed): the cursor in the feed, the state
 * with the pending batch (webhook-id and exact body), and the node that holds
 * the row until `lease_until`. Times are the database's now(), so the nodes'
 * clocks never compare with each other.
 *
 * - The origin node creates and holds its rows, and renews every lease it
 *   holds every takeoverSeconds/6 (one UPDATE for all of them).
 * - A row whose lease ran out (its holder silent for takeoverSeconds: killed,
 *   paused, cut off) is taken by the first node to ask: one
 *   `UPDATE … WHERE lease_until < now() … RETURNING`, which PostgreSQL's row
 *   locks make exactly one taker's.
 * - Every write of a row is fenced, `WHERE holder = <this node>`: a node that
 *   lost its row writes nothing more, so it builds no new batch and moves no
 *   cursor (webhooks.ts also stops POSTing before its lease ends).
 * - The origin, started again, asks its rows back (`reclaim`); the holder
 *   stops its loop and hands the row over with its pending batch at its next
 *   renewal; the origin re-sends that batch under its same webhook-id.
 *
 * Side effects: PostgreSQL statements.
 */
import type { PostinoEvent } from '../../common/events.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import type { PgFeed } from './pg-feed.js';
import type { OutboxRow, OutboxState, SharedOutbox } from './webhooks.js';

interface Row {
  account: string;
  endpoint: string;
  origin: string;
  cursor: string;
  state: Omit<OutboxState, 'cursor'> | null;
  reclaim: boolean;
}

const rowOf = (r: Row): OutboxRow => ({
  account: r.account,
  endpoint: r.endpoint,
  origin: r.origin,
  reclaim: r.reclaim,
  state: r.state ? { ...r.state, cursor: Number(r.cursor) } : undefined,
});

const stateJson = ({ cursor: _cursor, ...rest }: OutboxState): string => JSON.stringify(rest);

export class PgWebhookOutbox implements SharedOutbox {
  constructor(
    private readonly pool: PgPool,
    readonly node: string,
    private readonly feed: PgFeed,
    readonly leaseMs: number,
  ) {}

  private get lease(): string {
    return `${this.leaseMs} milliseconds`;
  }

  async claim(account: string, endpoint: string, initial: OutboxState): Promise<OutboxState | undefined> {
    // Created held by this node; an existing row is this node's again when it holds it (a restart) or its lease ran out.
    const r = await sharedQuery<Row>(
      this.pool,
      'webhook outbox',
      `INSERT INTO webhook_outbox AS o (account, endpoint, origin, cursor, state, holder, lease_until) VALUES ($1, $2, $3, $4, $5, $3, now() + $6::interval)
       ON CONFLICT (account, endpoint, origin) DO UPDATE SET holder = $3, lease_until = now() + $6::interval, reclaim = false
         WHERE o.holder = $3 OR o.lease_until < now()
       RETURNING account, endpoint, origin, cursor, state, reclaim`,
      [account, endpoint, this.node, initial.cursor, stateJson(initial), this.lease],
    );
    if (r.rows[0]) return rowOf(r.rows[0]).state;
    // Held by a live node (it took the row while this one was away): ask for it back.
    await sharedQuery(this.pool, 'webhook outbox', 'UPDATE webhook_outbox SET reclaim = true WHERE account = $1 AND endpoint = $2 AND origin = $3 AND holder <> $3', [account, endpoint, this.node]);
    return undefined;
  }

  async save(account: string, endpoint: string, origin: string, state: OutboxState): Promise<boolean> {
    const r = await sharedQuery(this.pool, 'webhook outbox', 'UPDATE webhook_outbox SET cursor = $4, state = $5 WHERE account = $1 AND endpoint = $2 AND origin = $3 AND holder = $6', [
      account,
      endpoint,
      origin,
      state.cursor,
      stateJson(state),
      this.node,
    ]);
    return r.rowCount === 1;
  }

  async renew(): Promise<OutboxRow[]> {
    // Another origin's state comes back too: a held row without a loop (after an error) gets one again.
    const r = await sharedQuery<Row>(
      this.pool,
      'webhook outbox',
      `UPDATE webhook_outbox SET lease_until = now() + $2::interval WHERE holder = $1
       RETURNING account, endpoint, origin, cursor, CASE WHEN origin <> $1 THEN state END AS state, reclaim`,
      [this.node, this.lease],
    );
    return r.rows.map(rowOf);
  }

  async take(endpoints: readonly string[]): Promise<OutboxRow[]> {
    if (endpoints.length === 0) return [];
    const r = await sharedQuery<Row>(
      this.pool,
      'webhook outbox',
      `UPDATE webhook_outbox SET holder = $1, lease_until = now() + $2::interval, reclaim = false
       WHERE lease_until < now() AND holder <> $1 AND origin <> $1 AND state->'disabled' IS NULL AND account || '!' || endpoint = ANY($3::text[])
       RETURNING account, endpoint, origin, cursor, state, reclaim`,
      [this.node, this.lease, endpoints],
    );
    return r.rows.map(rowOf);
  }

  async handBack(account: string, endpoint: string, origin: string): Promise<void> {
    // The origin's lease starts now: it takes the row at its next look without waiting for an expiry.
    await sharedQuery(this.pool, 'webhook outbox', 'UPDATE webhook_outbox SET holder = origin, lease_until = now() + $5::interval, reclaim = false WHERE account = $1 AND endpoint = $2 AND origin = $3 AND holder = $4', [
      account,
      endpoint,
      origin,
      this.node,
      this.lease,
    ]);
  }

  async remove(account: string, endpoint: string): Promise<void> {
    await sharedQuery(this.pool, 'webhook outbox', 'DELETE FROM webhook_outbox WHERE account = $1 AND endpoint = $2', [account, endpoint]);
  }

  scan(origin: string, after: number, top: number): AsyncGenerator<PostinoEvent> {
    return this.feed.scan(after, top, undefined, origin);
  }
}
