/*
 * worker-loop.ts — drain a DurableQueue with bounded concurrency.
 *
 * Leases as many due messages as there are free slots, runs `handle` on each,
 * and sleeps on the queue's next due time (or an enqueue) when nothing is due.
 * The handler must ack or nack its message. A handler that throws hands its
 * message to `deadLetter` (dead-letter.ts: back after a growing backoff, and
 * to the failed records after the attempt limit); without one, it gets the
 * message back after `retryOnCrashMs` so a bug cannot spin the loop.
 *
 * `pause()` stops leasing at once; in-flight handlers finish (the kill-switch
 * semantics: no new transaction starts, a started one completes).
 * `stop()` pauses and waits for in-flight handlers. `start()` after `pause()`
 * resumes; a loop from before the pause exits on its own (generation check).
 * `rate` (a token bucket) caps messages started per second: the loop leases no
 * more than there are tokens and sleeps until the next one.
 *
 * Time is injected (`clock`, `timers`; the real ones by default) so tests drive
 * retries, gates and rate waits without sleeping.
 */
import type { DeadLetter } from './dead-letter.js';
import type { DurableQueue, QueueRecord } from './durable-queue.js';
import type { Logger } from './log.js';
import type { RateLimit } from './token-bucket.js';

export interface WorkerOptions<M> {
  queue: DurableQueue<M>;
  concurrency: number;
  /** How long a leased message stays invisible; longer than the slowest handler. */
  visibilityMs: number;
  handle: (rec: QueueRecord<M>) => Promise<void>;
  log: Logger;
  /** Upper bound of one idle sleep, so a clock jump or a missed wake-up costs at most this. */
  idleWaitMs?: number;
  retryOnCrashMs?: number;
  /** Bounded attempts and the failed state for a handler that throws (see the header). */
  deadLetter?: DeadLetter<M>;
  /** Called before each lease; returning a number > 0 delays leasing (rate limits). */
  gate?: () => number;
  /** Messages per second cap (token bucket): no more messages are leased than there are tokens. */
  rate?: RateLimit;
  /** Due times of given-back messages. Default Date.now. */
  clock?: () => number;
  /** Gate, rate and lease-failure waits. Default the real setTimeout. */
  timers?: Timers;
}

/** setTimeout/clearTimeout, injectable so tests can drive waits with a fake clock. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class WorkerLoop<M> {
  private inFlight = new Set<Promise<void>>();
  private running = false;
  private paused = false;
  private abort = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private slotFreed: (() => void) | undefined;
  /** Bumped by start(): a loop from before a pause/resume sees it and exits, so two never run. */
  private generation = 0;

  private readonly now: () => number;
  private readonly timers: Timers;

  constructor(private readonly o: WorkerOptions<M>) {
    this.now = o.clock ?? Date.now;
    this.timers = o.timers ?? realTimers;
  }

  get active(): number {
    return this.inFlight.size;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.paused = false;
    this.abort = new AbortController();
    const gen = ++this.generation;
    const previous = this.loopDone;
    this.loopDone = previous.then(() => this.loop(gen));
  }

  /** Stops starting new work now; returns at once. */
  pause(): void {
    this.paused = true;
    this.running = false;
    this.abort.abort();
    this.slotFreed?.();
  }

  /** Stops starting new work and waits for in-flight handlers. */
  async stop(): Promise<void> {
    this.pause();
    await this.loopDone;
    await Promise.allSettled([...this.inFlight]);
  }

  private async loop(gen: number): Promise<void> {
    const { queue, concurrency, visibilityMs, log } = this.o;
    const idle = this.o.idleWaitMs ?? 5_000;
    const current = (): boolean => this.running && gen === this.generation;
    while (current()) {
      if (this.inFlight.size >= concurrency) {
        await new Promise<void>((r) => (this.slotFreed = r));
        continue;
      }
      const delay = this.o.gate?.() ?? 0;
      if (delay > 0) {
        await sleep(delay, this.abort.signal, this.timers);
        continue;
      }
      let want = concurrency - this.inFlight.size;
      if (this.o.rate) {
        const tokens = this.o.rate.available();
        if (tokens < 1) {
          await sleep(this.o.rate.msUntilNext(), this.abort.signal, this.timers);
          continue;
        }
        want = Math.min(want, tokens);
      }
      let batch: QueueRecord<M>[];
      try {
        batch = await queue.lease(want, visibilityMs);
      } catch (err) {
        log.error({ err, queue: queue.name }, 'lease failed');
        await sleep(1_000, this.abort.signal, this.timers);
        continue;
      }
      if (!current()) {
        // Paused while leasing: give the messages straight back, no attempt charged.
        await Promise.all(batch.map((r) => queue.release(r, this.now())));
        return;
      }
      if (batch.length === 0) {
        await queue.waitForWork(idle, this.abort.signal);
        continue;
      }
      this.o.rate?.take(batch.length);
      for (const rec of batch) this.run(rec);
    }
  }

  private run(rec: QueueRecord<M>): void {
    const p = this.o
      .handle(rec)
      .catch(async (err: unknown) => {
        if (this.o.deadLetter) {
          await this.o.deadLetter.crashed(rec, err).catch((e: unknown) => this.o.log.error({ err: e, queueId: rec.id, queue: this.o.queue.name }, 'recording a failed attempt failed; the lease expiry retries it'));
          return;
        }
        this.o.log.error({ err, queueId: rec.id, queue: this.o.queue.name }, 'handler failed; message returns to the queue');
        await this.o.queue.nack(rec, this.now() + (this.o.retryOnCrashMs ?? 60_000)).catch(() => undefined);
      })
      .finally(() => {
        this.inFlight.delete(p);
        const f = this.slotFreed;
        this.slotFreed = undefined;
        f?.();
      });
    this.inFlight.add(p);
  }
}

export function sleep(ms: number, signal?: AbortSignal, timers: Timers = realTimers): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = timers.setTimeout(done, ms);
    function done(): void {
      timers.clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
