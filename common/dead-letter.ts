/*
 * dead-letter.ts — bounded attempts for a message whose handler throws (a
 * poison message: a bug, or input nothing validated), decided in one place for
 * every worker (rewrap, delivery, feedback reports).
 *
 * A failed attempt gives the message back with a growing backoff
 * (`backoffMs[failures - 1]`, the last entry repeating), so it never holds up
 * the messages behind it for more than the one attempt it took. After
 * `maxAttempts` failed attempts it moves to the queue's failed records
 * (durable-queue.ts `failOps`) in one batch with its `failed` event(s): the
 * message is kept, visible and retryable, and the feed says why.
 *
 * What counts as an attempt: the handler failures recorded on the record
 * (`failures`), and with `countLeases` every lease (`attempts`), so a message
 * that kills the process before its handler returns is also stopped after
 * `maxAttempts` restarts. The delivery queue counts failures only: its leases
 * include ordinary retries after 4xx replies.
 *
 * The record's metadata is re-read before it is given back or moved, so progress
 * a handler committed during the attempt (the rewrap's `resumeAt`) is kept.
 *
 * Not the message's fault: a handler that failed because the shared-state
 * database did not answer (PostinoError SHARED_STATE_UNAVAILABLE, e.g. a
 * suppression check with PostgreSQL down) gives the message back after
 * SHARED_STATE_RETRY_MS without counting an attempt (durable-queue.ts
 * `release`), however long the outage: it is never sent unchecked and never
 * moved to failed for it.
 *
 * Config: engine.maxAttempts (5), engine.crashRetrySeconds ([10, 60, 300, 900]).
 * Side effects: LevelDB batches (unsynced give-back; synced move to failed).
 */
import type { DurableQueue, QueueRecord } from './durable-queue.js';
import { PostinoError } from './errors.js';
import type { Logger } from './log.js';
import type { BatchOp } from './store.js';

/** The longest error text kept on a failed record and in its event. */
const MAX_ERROR_CHARS = 500;
/**
 * A message whose shared state could not be read is tried again this soon: a
 * PostgreSQL restart or failover takes seconds, and the queue resumes within 5 s
 * of its return at the cost of one quick refused query per waiting message per 5 s.
 */
export const SHARED_STATE_RETRY_MS = 5_000;

export interface AttemptLimit {
  maxAttempts: number;
  /** Wait before the next attempt after the 1st, 2nd, … failure; the last entry repeats. */
  backoffMs: readonly number[];
}

/** Events written with a state change: their ops, then settle (committed) or abandon (not). */
export interface PreparedOps {
  ops: BatchOp[];
  settle(): void;
  abandon(): void;
}

/** Several PreparedOps as one: their ops in one batch, settled or abandoned together. */
export function joinPrepared(...parts: Array<PreparedOps | undefined>): PreparedOps {
  const all = parts.filter((p): p is PreparedOps => p !== undefined);
  return { ops: all.flatMap((p) => p.ops), settle: () => all.forEach((p) => p.settle()), abandon: () => all.forEach((p) => p.abandon()) };
}

export interface DeadLetterOptions<M> {
  queue: DurableQueue<M>;
  limit: AttemptLimit;
  /** Count every lease as an attempt (see the header). */
  countLeases: boolean;
  /** The `failed` event(s) for a message given up on (and, for the engine, its DSN). */
  failedEvents: (rec: QueueRecord<M>, reason: string) => PreparedOps | Promise<PreparedOps>;
  log: Logger;
  clock?: () => number;
  /** Called after a message moved to the failed records (metrics). */
  onFailed?: (rec: QueueRecord<M>) => void;
}

export type CrashOutcome = 'retry' | 'failed' | 'lost' | 'deferred';

/** The error of a failed attempt, in words, bounded. */
export function errorText(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text;
}

export class DeadLetter<M> {
  private readonly now: () => number;

  constructor(private readonly o: DeadLetterOptions<M>) {
    this.now = o.clock ?? Date.now;
  }

  /** Attempts made so far, this one included. */
  attemptsOf(rec: QueueRecord<M>): number {
    const failures = (rec.failures ?? 0) + 1;
    return this.o.countLeases ? Math.max(failures, rec.attempts) : failures;
  }

  /** Wait before the next attempt after `failures` failed ones. */
  backoff(failures: number): number {
    const b = this.o.limit.backoffMs;
    return b[Math.min(Math.max(failures, 1), b.length) - 1] ?? 0;
  }

  /**
   * A handler threw on a leased message: give it back for later, or (past the
   * limit) move it to the failed records with its event. 'lost' = the lease had
   * expired; whoever holds the message now decides.
   */
  async crashed(leased: QueueRecord<M>, err: unknown): Promise<CrashOutcome> {
    const { queue, log } = this.o;
    const attempts = this.attemptsOf(leased);
    const error = errorText(err);
    const failures = (leased.failures ?? 0) + 1;
    const now = this.now();
    if (!queue.holds(leased)) return 'lost';
    // The handler may have committed progress in the record's meta since the lease (the
    // rewrap's resumeAt): keep it, or the next attempt would redo what is done.
    const stored = await queue.get(leased.id);
    const rec: QueueRecord<M> = stored ? { ...leased, meta: stored.meta } : leased;
    if (err instanceof PostinoError && err.code === 'SHARED_STATE_UNAVAILABLE') {
      await queue.release(rec, now + SHARED_STATE_RETRY_MS);
      log.warn({ event: 'shared-state-deferred', queueId: rec.id, queue: queue.name, reason: err.reason }, 'shared state unavailable; message waits in the queue');
      return 'deferred';
    }
    if (attempts < this.o.limit.maxAttempts) {
      const due = now + this.backoff(failures);
      await queue.store.commit(queue.nackOps({ ...rec, failures, lastError: error }, due), { sync: false });
      queue.nacked(rec);
      log.error({ err, queueId: rec.id, queue: queue.name, attempts, next: new Date(due).toISOString() }, 'handler failed; message returns to the queue');
      return 'retry';
    }
    const reason = `gave up after ${attempts} attempts (engine.maxAttempts ${this.o.limit.maxAttempts}): ${error}`;
    const ev = await this.o.failedEvents(rec, reason);
    try {
      await queue.store.commit([...queue.failOps({ ...rec, failures }, error, now), ...ev.ops], { sync: true });
    } catch (e) {
      ev.abandon();
      throw e;
    }
    queue.failedMoved(rec);
    ev.settle();
    this.o.onFailed?.(rec);
    log.error({ err, event: 'failed', queueId: rec.id, queue: queue.name, attempts }, 'handler failed too often; message moved to failed');
    return 'failed';
  }
}
