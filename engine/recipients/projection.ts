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
 * Side effects: LevelDB reads and writes.
 */
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { EventLog } from '../events/event-log.js';
import type { RecipientCounters, RecipientDb } from '../recipient-db.js';
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
    while (!this.stopped) {
      const batch = await this.o.events.read(this.cursor, BATCH);
      if (batch.length === 0) return;
      await this.apply(batch);
    }
  }

  private apply(batch: PostinoEvent[]): Promise<void> {
    const { db } = this.o;
    return db.exclusive(async () => {
      const counted = batch.filter((e) => e.recipient && countEvent({ sent: 0, bounced: 0, complained: 0 }, e));
      const pairs = new Map<string, { account: string; address: string }>();
      for (const e of counted) {
        const address = normalizeEmail(e.recipient!);
        pairs.set(`${e.account}!${address}`, { account: e.account, address });
      }
      const list = [...pairs.values()];
      const { exists, counters } = await db.countersMany(list);
      const byKey = new Map<string, RecipientCounters | undefined>();
      list.forEach((p, i) => byKey.set(`${p.account}!${p.address}`, exists[i] ? counters[i] : undefined));
      const changed = new Set<string>();
      for (const e of counted) {
        const k = `${e.account}!${normalizeEmail(e.recipient!)}`;
        const c = byKey.get(k);
        if (c && countEvent(c, e)) changed.add(k);
      }
      const last = batch[batch.length - 1]!.seq;
      const ops: BatchOp[] = [{ type: 'put', key: CURSOR_KEY, value: Buffer.from(String(last)) }];
      for (const k of changed) {
        const p = pairs.get(k)!;
        ops.push(...db.countersOps(p.account, p.address, byKey.get(k)!));
      }
      await this.o.store.commit(ops, { sync: false });
      this.cursor = last;
    });
  }
}
