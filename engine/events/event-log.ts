/*
 * event-log.ts — the durable event log behind the DataExporter feed.
 *
 * Keys `e!<seq, 16 digits>` in the hosted node's LevelDB. `prepare(inputs)`
 * assigns sequence numbers and returns the put ops; the caller commits them in
 * the same batch as the state change, then calls `settle(seqs)` (or
 * `abandon(seqs)` when its batch failed). Readers only see events up to the
 * watermark: the highest seq below which every prepared event is settled or
 * abandoned, so a reader resuming `after=<seq>` never skips an event that
 * committed late. Gaps (abandoned seqs) are allowed; order is not violated.
 *
 * Filters, CSV, webhooks, statistics and retention build on `scan()` (an
 * iterator straight over LevelDB, so a feed of a million events never sits in
 * memory), `read()` and `subscribe()` (called with each settled batch).
 *
 * Indexers (`addIndexer`): the message-history index and the statistics
 * deltas are ops computed from the events in `prepare()`, so every writer
 * commits them in the same batch as the events without knowing they exist.
 *
 * Tail cache: the stored bytes of the last TAIL_EVENTS settled events stay in
 * memory, and `read()` without a filter answers from them when the range is
 * all there. The readers that follow the log (recipient projection,
 * notifications, the global feed's shipper) each read every event just after it
 * settled: an iterator per read was ~0.25 ms per message in a profile of the
 * hosted node (issue #17). Each reader still parses its own copy. Whatever
 * rewrites or removes stored events (erasure, retention) calls `dropTail()`, so
 * the cache never answers with bytes LevelDB no longer holds.
 */
import type { PostinoEvent, EventInput } from '../../common/events.js';
import type { BatchOp, Store } from '../../common/store.js';
import { randomBase64url } from '../../common/random-pool.js';

const SEQ_WIDTH = 16;
const PREFIX = 'e!';
/** Settled events kept in memory for `read()`: a few seconds of peak traffic, ~2 MB at ~500 bytes each. */
const TAIL_EVENTS = 4096;

export function seqKey(seq: number): string {
  return PREFIX + seq.toString().padStart(SEQ_WIDTH, '0');
}

export interface PreparedEvents {
  events: PostinoEvent[];
  ops: BatchOp[];
  /** The stored bytes of each event, in the order of `events`. */
  values: Buffer[];
}

export class EventLog {
  private nextSeq = 1;
  private readonly pending = new Set<number>();
  private readonly subscribers: Array<(events: PostinoEvent[]) => void> = [];
  private readonly indexers: Array<(events: PostinoEvent[]) => BatchOp[]> = [];
  /** Stored bytes of settled events by seq (see the header); every settled seq ≥ tailFrom is here. */
  private readonly tail = new Map<number, Buffer>();
  private tailFrom = 1;

  /** Public for the indexes, which read and write their keys beside the events (recipient-index.ts). */
  private constructor(readonly store: Store) {}

  static async open(store: Store): Promise<EventLog> {
    const log = new EventLog(store);
    for await (const key of store.db.keys({ gte: PREFIX, lt: 'e~', reverse: true, limit: 1 })) {
      log.nextSeq = Number(key.slice(PREFIX.length)) + 1;
    }
    log.tailFrom = log.nextSeq;
    return log;
  }

  /** Highest seq a reader may see. */
  get watermark(): number {
    let low = this.nextSeq;
    for (const s of this.pending) low = Math.min(low, s);
    return low - 1;
  }

  prepare(inputs: EventInput[], now = new Date()): PreparedEvents {
    const events = inputs.map((input): PostinoEvent => {
      const seq = this.nextSeq++;
      this.pending.add(seq);
      return { ...input, seq, id: `evt_${randomBase64url(9)}`, at: input.at ?? now.toISOString() };
    });
    const values = events.map((e) => Buffer.from(JSON.stringify(e)));
    const ops: BatchOp[] = events.map((e, i) => ({ type: 'put', key: seqKey(e.seq), value: values[i]! }));
    if (events.length) for (const ix of this.indexers) ops.push(...ix(events));
    return { events, ops, values };
  }

  /** Ops derived from each prepared batch of events (secondary indexes, statistics), committed with them. */
  addIndexer(fn: (events: PostinoEvent[]) => BatchOp[]): void {
    this.indexers.push(fn);
  }

  /** The next seq to be assigned (for lag and size gauges). */
  get nextSequence(): number {
    return this.nextSeq;
  }

  /** The batch holding these events committed. */
  settle(p: PreparedEvents): void {
    p.events.forEach((e, i) => {
      this.pending.delete(e.seq);
      if (e.seq >= this.tailFrom) this.tail.set(e.seq, p.values[i]!);
    });
    // Oldest first; a seq missing below the bound is a gap (abandoned), skipped the same way.
    while (this.tail.size > TAIL_EVENTS) this.tail.delete(this.tailFrom++);
    if (p.events.length) for (const s of this.subscribers) s(p.events);
  }

  /** The batch holding these events failed: their seqs become gaps. */
  abandon(p: PreparedEvents): void {
    for (const e of p.events) this.pending.delete(e.seq);
  }

  /** Appends events on their own (no accompanying state change). */
  async append(inputs: EventInput[], sync = false): Promise<PostinoEvent[]> {
    return (await this.commitWith(inputs, async (ops) => this.store.commit(ops, { sync })))!;
  }

  /**
   * Events and the state change they report in one batch: `write` commits the
   * event ops together with its own, and may decline (false: e.g. a lease was
   * lost), in which case the events never happened. Undefined when declined.
   */
  async commitWith(inputs: EventInput[], write: (eventOps: BatchOp[]) => Promise<boolean | void>): Promise<PostinoEvent[] | undefined> {
    const p = this.prepare(inputs);
    let written: boolean | void;
    try {
      written = await write(p.ops);
    } catch (e) {
      this.abandon(p);
      throw e;
    }
    if (written === false) {
      this.abandon(p);
      return undefined;
    }
    this.settle(p);
    return p.events;
  }

  /** Events with seq > after, oldest first, at most `limit`, never past the watermark. */
  async read(after: number, limit: number, filter?: (e: PostinoEvent) => boolean): Promise<PostinoEvent[]> {
    if (!filter) {
      // The readers that follow the log (projection, notifications, webhooks) call this as events
      // arrive: all() reads the batch in one trip to the thread pool, where scan's for-await makes
      // two (classic-level's first next() fetches a single entry) (issue #17).
      const top = this.watermark;
      if (after >= top) return [];
      if (after + 1 >= this.tailFrom) return this.fromTail(after, top, Math.max(1, limit));
      // At least one, as the loop below gives for a limit of 0.
      const values = await this.store.db.values({ gt: seqKey(after), lte: seqKey(top), limit: Math.max(1, limit) }).all();
      return values.map((v) => JSON.parse(v.toString('utf8')) as PostinoEvent);
    }
    const out: PostinoEvent[] = [];
    for await (const e of this.scan(after)) {
      if (!filter || filter(e)) out.push(e);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** `read()` from the tail cache: every settled seq in (after, top] is in it, a missing one is a gap. */
  private fromTail(after: number, top: number, limit: number): PostinoEvent[] {
    const out: PostinoEvent[] = [];
    for (let seq = after + 1; seq <= top && out.length < limit; seq++) {
      const v = this.tail.get(seq);
      if (v) out.push(JSON.parse(v.toString('utf8')) as PostinoEvent);
    }
    return out;
  }

  /** Stored events are being rewritten or removed (erasure, retention): `read()` goes to LevelDB until new events settle. */
  dropTail(): void {
    this.tail.clear();
    this.tailFrom = this.nextSeq;
  }

  /**
   * Events with seq in (after, top], oldest first, one at a time off a LevelDB
   * iterator (a snapshot: pruning or writes meanwhile do not disturb it).
   * `top` defaults to the watermark at the call; breaking out closes the iterator.
   */
  async *scan(after: number, top = this.watermark): AsyncGenerator<PostinoEvent> {
    if (after >= top) return;
    for await (const [, v] of this.store.db.iterator({ gt: seqKey(after), lte: seqKey(top) })) {
      yield JSON.parse(v.toString('utf8')) as PostinoEvent;
    }
  }

  /** The oldest seq still kept (retention prunes from the start), undefined when the log is empty. */
  async firstSeq(): Promise<number | undefined> {
    for await (const key of this.store.db.keys({ gte: PREFIX, lt: 'e~', limit: 1 })) return Number(key.slice(PREFIX.length));
    return undefined;
  }

  /** The event with this seq, if it is still kept. */
  async get(seq: number): Promise<PostinoEvent | undefined> {
    const v = await this.store.db.get(seqKey(seq));
    return v === undefined ? undefined : (JSON.parse(v.toString('utf8')) as PostinoEvent);
  }

  subscribe(fn: (events: PostinoEvent[]) => void): void {
    this.subscribers.push(fn);
  }
}
