/*
 * retention.ts — forgets events, their message-history and recipient index entries and
 * statistics past their keeping period, in small batches while writes go on.
 *
 * Config: events.retentionDays (default 30: events and per-message history),
 * events.statsRetentionDays (default 396, about 13 months), both pruned every
 * events.pruneIntervalSeconds (default 600).
 *
 * Events are pruned from the oldest seq up: seqs are assigned in time order,
 * so the first event newer than the cutoff ends a pass. Each batch deletes at
 * most PRUNE_BATCH events (with their index keys) in one LevelDB batch, and
 * the loop yields to the event loop between batches, so a backlog of a
 * million expired events never holds up mail. A feed reader whose `after` is
 * older than what is kept simply resumes at the oldest kept event.
 * Side effects: LevelDB deletes.
 */
import { setImmediate as yieldNow } from 'node:timers/promises';
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';
import { indexKeys } from './message-history.js';
import { recipientIndexKeys } from './recipient-index.js';
import type { StatsCounters } from './stats.js';

/** Events (plus their index keys) deleted per LevelDB batch. */
const PRUNE_BATCH = 1_000;
const DAY_MS = 86_400_000;

export interface RetentionOptions {
  store: Store;
  /** The log whose stored events this prunes: its tail cache is dropped with them (event-log.ts). */
  events: Pick<EventLog, 'dropTail'>;
  stats: StatsCounters;
  retentionDays: number;
  statsRetentionDays: number;
  log: Logger;
  now?: () => number;
}

export interface PruneResult {
  events: number;
  counters: number;
}

export class Retention {
  private running: Promise<PruneResult> | undefined;

  constructor(private readonly o: RetentionOptions) {}

  /** One full pass (a second call while one runs joins it). */
  prune(): Promise<PruneResult> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<PruneResult> {
    const now = (this.o.now ?? Date.now)();
    const cutoffMs = now - this.o.retentionDays * DAY_MS;
    const cutoff = new Date(cutoffMs).toISOString();
    let events = 0;
    for (;;) {
      const ops: BatchOp[] = [];
      let done = false;
      let n = 0;
      for await (const [k, v] of this.o.store.db.iterator({ gte: 'e!', lt: 'e~', limit: PRUNE_BATCH })) {
        const e = JSON.parse(v.toString('utf8')) as PostinoEvent;
        if (Date.parse(e.at) >= cutoffMs) {
          done = true;
          break;
        }
        ops.push({ type: 'del', key: k }, ...[...indexKeys(e), ...recipientIndexKeys(e)].map((key): BatchOp => ({ type: 'del', key })));
        n++;
      }
      if (n) this.o.events.dropTail();
      if (ops.length) await this.o.store.commit(ops, { sync: false });
      if (n) this.o.events.dropTail();
      events += n;
      if (done || n < PRUNE_BATCH) break;
      await yieldNow();
    }
    let counters = 0;
    const statsCutoff = now - this.o.statsRetentionDays * DAY_MS;
    for (;;) {
      const n = await this.o.stats.prune(statsCutoff, PRUNE_BATCH);
      counters += n;
      if (n < PRUNE_BATCH) break;
      await yieldNow();
    }
    if (events || counters) this.o.log.info({ event: 'events-pruned', events, counters, cutoff }, 'pruned events and statistics past their retention');
    return { events, counters };
  }
}
