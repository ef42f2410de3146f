/*
 * projection.ts — the recipients' counters (sent, bounced, complained, last
 * sent, last opened, last clicked) kept from the event log, not by the
 * writers of those events: the rewrap, delivery and feedback code stay as
 * they are, and the counters can be rebuilt by resetting the cursor.
 *
 * A reader of the event log like any other (DESIGN.md: readers follow the log
 * by cursor). The cursor `recipients!cursor` (the last seq counted) is written
 * in the same LevelDB batch as the counters it accounts for, so each event is
 * counted exactly once across crashes and restarts: a batch lost in a crash
 * takes its cursor move with it and is counted again from the log.
 * It runs after the event log settles a batch (EventLog.subscribe wakes it),
 * BATCH events at a time, and catches up from the cursor at start.
 *
 * Counted: `delivered` (sent, lastSent), `bounced` of any class, `complained`,
 * and `opened`/`clicked` made by a person (machine opens and link scanners are
 * not a reader; lastOpened, lastClicked). Events of an address with no entry
 * (deleted on a privacy request, or never created) are passed over: counters
 * never bring a deleted address back.
 * With storage.postgres the counters are in the shared table: each node counts
 * its own log and adds its deltas there, with a per-node cursor in the same
 * transaction (recipient-db-postgres.ts), so each event still counts once.
 * Side effects: LevelDB reads and writes (PostgreSQL with storage.postgres).
 */
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import type { EventLog } from '../events/event-log.js';
import { NO_COUNTERS, type CounterDelta, type RecipientCounters, type RecipientDb } from '../recipient-db.js';
import { normalizeEmail } from '../../common/address.js';

export const CURSOR_KEY = 'recipients!cursor';
/** Events per batch: one multi-get and one write each. */
const BATCH = 1_000;
/** After a failed pass (disk full…), try again this much later. */
const RETRY_MS = 5_000;

export interface ProjectionOptions {
  store: Store;
  events: EventLog;
  db: RecipientDb;
  log: Logger;
}

/** Applies one event to counters; false when it does not count. */
export function countEvent(c: RecipientCounters, e: PostinoEvent): boolean {
  switch (e.type) {
    case 'delivered':
      c.sent++;
      if (!c.lastSent || e.at > c.lastSent) c.lastSent = e.at;
      return true;
    case 'bounced':
      c.bounced++;
      return true;
    case 'complained':
      c.complained++;
      return true;
    case 'opened':
      if (e.machine) return false;
      if (!c.lastOpened || e.at > c.lastOpened) c.lastOpened = e.at;
      return true;
    case 'clicked':
      if (e.machine) return false;
      if (!c.lastClicked || e.at > c.lastClicked) c.lastClicked = e.at;
      return true;
    default:
      return false;
  }
}

export class RecipientProjection {
  private cursor = 0;
  /** Whether the cursor was compared with the backend's (countedUpTo) since the start. */
  private synced = false;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly o: ProjectionOptions) {}

  async start(): Promise<void> {
    const v = await this.o.store.db.get(CURSOR_KEY);
    this.cursor = v ? Number(v.toString('utf8')) : 0;
    this.o.events.subscribe(() => this.wake());
    this.wake();
  }

  /** The last seq counted (tests, status). */
  get position(): number {
    return this.cursor;
  }

  /** Resolves once every event settled so far is counted. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((err: unknown) => {
        this.o.log.error({ err, event: 'recipient-projection-failed', cursor: this.cursor }, 'recipient counters: pass failed; retrying');
        this.retry = setTimeout(() => this.wake(), RETRY_MS).unref();
      })
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.idle();
  }

  private async drain(): Promise<void> {
    if (!this.synced) {
      // Counters kept in PostgreSQL carry their own cursor: a crash between its commit and the
      // local cursor's would otherwise count that batch twice.
      const shared = await this.o.db.countedUpTo();
      if (shared !== undefined && shared > this.cursor) this.cursor = shared;
      this.synced = true;
    }
    while (!this.stopped) {
      const batch = await this.o.events.read(this.cursor, BATCH);
      if (batch.length === 0) return;
      await this.apply(batch);
    }
  }

  private apply(batch: PostinoEvent[]): Promise<void> {
    const { db } = this.o;
    return db.exclusive(async () => {
      // What this batch adds, per entry (countEvent on zero counters is the delta); the backend
      // adds it to what is stored (LevelDB: read-modify-write; PostgreSQL: one UPDATE, so several
      // nodes' projections add to the same row without losing each other's counts).
      const deltas = new Map<string, CounterDelta>();
      for (const e of batch) {
        if (!e.recipient) continue;
        const address = normalizeEmail(e.recipient);
        const k = `${e.account}!${address}`;
        const d = deltas.get(k)?.d ?? { ...NO_COUNTERS };
        if (countEvent(d, e) && !deltas.has(k)) deltas.set(k, { account: e.account, address, d });
      }
      const last = batch[batch.length - 1]!.seq;
      await db.countEvents([...deltas.values()], last, [{ type: 'put', key: CURSOR_KEY, value: Buffer.from(String(last)) }]);
      this.cursor = last;
    });
  }
}
