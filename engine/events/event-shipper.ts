/*
 * event-shipper.ts — copies this node's event log into the global feed in
 * PostgreSQL (storage.postgres), so a feed reader sees every node's events,
 * once, in one order, through any node (pg-feed.ts reads it).
 *
 * Each node keeps writing its events into its own LevelDB log, in the same
 * batch as the state change they report (event-log.ts): the hot path never
 * waits for PostgreSQL, and an outage of PostgreSQL only delays the feed.
 * The shipper follows the log's watermark and ships batches of up to
 * BATCH_EVENTS in one transaction: the rows, the feed counter, and this
 * node's shipped cursor (event_feed_nodes) together, so a batch is shipped
 * exactly once even when the process dies around the COMMIT.
 *
 * The sequence-gap problem. With several writers, global seqs taken from a
 * sequence (or max+1) are handed out in the order transactions *start*,
 * while readers see them in the order they *commit*: node A takes 41, node B
 * takes 42 and commits first, a reader reads 42 and resumes after it, and
 * A's 41 is never seen. Here the seqs come from the one row of
 * event_feed_counter, locked FOR UPDATE by the shipping transaction and held
 * until its COMMIT: the next shipper, on any node, waits for that commit and
 * continues above it. Seqs are therefore handed out in commit order, and the
 * committed counter is a watermark: every row at or below it is committed
 * (pg-feed.ts reads the counter, then the rows up to it). The cost is that
 * shippers take turns, one short transaction per batch (a multi-row INSERT of
 * what accumulated while the previous one ran, so batches grow with the load
 * rather than transactions multiplying), and it never touches the SMTP path.
 *
 * Partitions: `events` is partitioned by UTC day (migration 2); before a
 * batch with a day not seen yet, postino_event_partitions() creates that day
 * and the next. Retention drops whole days (dropOlderThan).
 *
 * Config: storage.postgres (pool); events.retentionDays (the caller).
 * Side effects: PostgreSQL transactions; timers.
 */
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { sharedQuery, sharedTransaction, type PgClient, type PgPool } from '../../common/storage/postgres/pool.js';
import type { EventLog } from './event-log.js';

/** Events per shipping transaction: one multi-row INSERT, well under a second of work for PostgreSQL. */
const BATCH_EVENTS = 1_000;
/** While PostgreSQL does not answer, try again this often (events keep collecting in the local log). */
const RETRY_MS = 2_000;

export interface ShipperOptions {
  pool: PgPool;
  events: EventLog;
  /** This node's name in the feed (common/node-id.ts). */
  node: string;
  log: Logger;
  /** Test seam: runs inside the shipping transaction, after the rows and before COMMIT. */
  beforeCommit?: (c: PgClient) => Promise<void>;
}

const day = (iso: string): string => iso.slice(0, 10);

export class EventShipper {
  /** The last local seq in the feed; undefined until read from event_feed_nodes. */
  private shipped: number | undefined;
  private readonly days = new Set<string>();
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private down = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly shippedListeners: Array<() => void> = [];

  constructor(private readonly o: ShipperOptions) {}

  /** Called after each batch reaches the feed (this node's webhooks follow the feed). */
  onShipped(fn: () => void): void {
    this.shippedListeners.push(fn);
  }

  start(): void {
    this.o.events.subscribe(() => this.kick());
    this.timer = setInterval(() => this.kick(), RETRY_MS).unref();
    this.kick();
  }

  /** Ships what is there now; resolves when this node's log up to its watermark is in the feed (or shipping failed). */
  kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          while (!this.stopped && (await this.shipOnce()) > 0);
          if (this.down) this.o.log.info({ event: 'event-feed-up', node: this.o.node }, 'global event feed: shipping again');
          this.down = false;
        } catch (err) {
          if (!this.down) this.o.log.warn({ event: 'event-feed-down', node: this.o.node, err: { message: (err as Error).message } }, `global event feed: cannot ship, retrying every ${RETRY_MS / 1000} s; events wait in the local log`);
          this.down = true;
          return;
        }
      } while (this.again && !this.stopped);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Local seq shipped so far (undefined before the first contact with PostgreSQL). */
  get cursor(): number | undefined {
    return this.shipped;
  }

  /** One batch; the number of events shipped (0: nothing new). */
  private async shipOnce(): Promise<number> {
    if (this.shipped === undefined) {
      const r = await sharedQuery<{ shipped: string }>(this.o.pool, 'event feed cursor', 'SELECT shipped FROM event_feed_nodes WHERE node = $1', [this.o.node]);
      this.shipped = r.rows[0] ? Number(r.rows[0].shipped) : 0;
    }
    const batch = await this.o.events.read(this.shipped, BATCH_EVENTS);
    if (batch.length === 0) return 0;
    await this.ensureDays(batch);
    const shipped = await sharedTransaction(this.o.pool, 'event feed', async (c) => {
      const counter = await c.query<{ last: string }>('SELECT last FROM event_feed_counter WHERE id = 1 FOR UPDATE');
      if (!counter.rows[0]) throw new PostinoError('SHARED_STATE_UNAVAILABLE', 'event_feed_counter has no row: run postino db migrate');
      // Read again under the lock: a COMMIT whose reply was lost already shipped part of this.
      const cur = await c.query<{ shipped: string }>('SELECT shipped FROM event_feed_nodes WHERE node = $1', [this.o.node]);
      const from = Math.max(this.shipped!, cur.rows[0] ? Number(cur.rows[0].shipped) : 0);
      const todo = batch.filter((e) => e.seq > from);
      if (todo.length === 0) return from;
      let last = Number(counter.rows[0].last);
      const rows = todo.map((e) => ({ ...e, seq: ++last, node: this.o.node, nodeSeq: e.seq }));
      await c.query(
        `INSERT INTO events (at, seq, account, type, queue_id, body, node, node_seq)
         SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[], $8::bigint[])`,
        [rows.map((r) => r.at), rows.map((r) => r.seq), rows.map((r) => r.account), rows.map((r) => r.type), rows.map((r) => r.queueId ?? null), rows.map((r) => JSON.stringify(r)), rows.map((r) => r.node), rows.map((r) => r.nodeSeq)],
      );
      await c.query('UPDATE event_feed_counter SET last = $1 WHERE id = 1', [last]);
      const upTo = todo[todo.length - 1]!.seq;
      await c.query('INSERT INTO event_feed_nodes (node, shipped, at) VALUES ($1, $2, now()) ON CONFLICT (node) DO UPDATE SET shipped = EXCLUDED.shipped, at = EXCLUDED.at', [this.o.node, upTo]);
      await this.o.beforeCommit?.(c);
      return upTo;
    });
    this.shipped = shipped;
    for (const fn of this.shippedListeners) fn();
    return batch.length;
  }

  /** The day partitions a batch needs (this day and the next, created once per day seen). */
  private async ensureDays(batch: readonly PostinoEvent[]): Promise<void> {
    for (const d of new Set(batch.map((e) => day(e.at)))) {
      if (this.days.has(d)) continue;
      try {
        await sharedQuery(this.o.pool, 'event partitions', 'SELECT postino_event_partitions($1::date, 2)', [d]);
      } catch (err) {
        // Another node created the same day at the same moment: it exists, which is what we want.
        if (!/already exists|duplicate key/.test((err as Error).message)) throw err;
      }
      this.days.add(d);
    }
  }

  /** Drops the feed's day partitions before `before` (events.retentionDays; any node may run it). */
  async dropOlderThan(before: Date): Promise<number> {
    const r = await sharedQuery<{ n: number }>(this.o.pool, 'event retention', 'SELECT postino_drop_event_partitions($1::date) AS n', [before.toISOString().slice(0, 10)]);
    return r.rows[0]?.n ?? 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
