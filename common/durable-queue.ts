/*
 * durable-queue.ts — the queue every stage uses (forwarder spool, engine intake,
 * delivery): enqueue durably, lease with a visibility timeout, ack, nack with a
 * new due time.
 *
 * Guarantee (DESIGN.md 1): `enqueue` resolves only after a LevelDB batch written
 * with `sync: true` (group-committed, see store.ts) holds the message; the
 * caller answers `250` after that and not before.
 *
 * Where bodies live, and why:
 *   - Bodies up to `inlineMaxBytes` (default 256 KiB) are LevelDB values written
 *     in the same synced batch as the metadata. Transactional mail is almost all
 *     small (2–50 KB), and this way one fsync of the LevelDB log commits a whole
 *     group of messages: group commit only works if the body rides in the batch.
 *   - Larger bodies are streamed to a file under blobs/ as they arrive, fsynced,
 *     and referenced from the metadata. A 25 MB attachment is therefore never
 *     held in memory (at most `inlineMaxBytes` per message in flight), and it
 *     never passes through LevelDB's memtable, log and compactions, which would
 *     rewrite it several times and stall every other writer.
 *   Bodies are read in memory up to inlineMaxBytes each, and up to
 *   DEFAULT_INLINE_BUDGET_BYTES summed over the queue (`inlineBudgetBytes`): past
 *   it a body spills to its file early, so many large messages arriving at once
 *   do not hold 256 KiB each. Bodies are read back as streams (`openBody`) so
 *   delivery does not load them either.
 *
 * Keys (one key range per queue name, all in the stage's one database):
 *   q!<queue>!m!<id>                 metadata record (JSON)
 *   q!<queue>!b!<id>                 inline body bytes (of a handed-over body: its head)
 *   q!<queue>!d!<due ms, 15 digits>!<id>   due index: iteration order = due order
 *   q!<queue>!f!<id>                 a failed record (dead letter): out of the due
 *                                    index, its body kept, until retried or deleted
 * Handed-over bodies: a record's body may end with another record's bytes instead of a copy
 * of them (`EnqueueInput.tail`, from `handOver`): its b! key holds only the head (the
 * rewrap's new header block), followed by the other record's b! value (BodyRef `tail`) or
 * blob file (BodyRef `from`) from an offset. The other queue removes its record with
 * `keepBody` in the same batch that commits this one, so the key or file has one owner at a
 * time, and it goes when this record goes (removeOps/removed, deleteFailed). Why: the hosted
 * node wrote every body twice, to the intake queue and again as the delivery copy's body with
 * only its header block changed; each write of an inline body passes LevelDB's log (a
 * software CRC), a memtable flush and a compaction, and each large one is a file created,
 * written, fsynced and unlinked (issue #17).
 * A lease moves the due entry to now + visibility timeout (the SQS model), so an
 * expired lease makes the message due again with no sweeper, and the next due
 * time is one key seek away: retries and scheduled sends wait on a timer, never
 * by polling every key. On open, every message leased before a crash is made due
 * at once ("in flight at the crash are retried").
 *
 * The due index is mirrored in memory (issue #17): a lease takes the first due
 * keys from a sorted set (sorted-keys.ts) instead of a LevelDB iterator, which
 * cost a trip to the thread pool, an iterator's create and close, and a walk
 * over the tombstones every lease and ack leave in the due range: ~0.55 ms of
 * the hosted process's main thread per message (829 ms for 1,500 messages),
 * and LevelDB's MemTableIterator::key ~5% of its samples. The copy is fed by
 * the store (`Store.observe`): every op on this queue's due keys, once the
 * commit that holds it succeeded, whoever committed it (a queue's ops ride in
 * other batches: the rewrap's, a dead letter's); a failed commit changes
 * nothing, so memory and disk agree. It is built at open from a scan of the due
 * range, and rebuilt after the store reopened from a write error (a failed
 * write may have landed). Bounded: past `dueIndexMax` keys (a forwarder
 * spooling through a long outage) the copy is dropped and leases scan LevelDB
 * as before (`dueKeys`) until the queue is back under half the cap. A lease
 * checks each key against its record's due time, so a key memory still holds
 * after its commit landed is skipped, never leased twice; and every
 * DUE_INDEX_CHECK_MS a scan of the due keys adds any that memory lacks, with a
 * warning (a write that bypassed the store shows up in tests, not as a stuck
 * message).
 *
 * Side effects: LevelDB writes, blob files.
 */
import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { TooLargeError, writeFileSynced, type HoldBudget } from './fsync.js';
import { randomHex } from './random-pool.js';
import { SortedKeys } from './sorted-keys.js';
import { chunkBatches, type ChunkBatches } from './stream-batches.js';
import type { BatchOp, Store } from './store.js';

/** 256 KiB: above typical transactional mail, far below LevelDB's comfortable value size. */
export const DEFAULT_INLINE_MAX_BYTES = 256 * 1024;
/**
 * Bytes that bodies still being read may hold in memory at once, summed over every
 * message of a queue, before it is known whether they stay inline (each up to
 * inlineMaxBytes). A body whose next chunk would go past it is written to a blob
 * file from then on. Why: 100 sessions of large messages that start together held
 * 100 × 256 KiB before any of them reached a file (issue #17); 8 MiB is 32 bodies
 * at the inline limit, which small mail never comes near (200 sessions of 2 KB hold
 * 400 KiB), so the group-committed inline path stays the path of small mail. The
 * chunks a blob write gathers (fsync.ts WRITE_GATHER_BYTES) are held within the same budget.
 */
export const DEFAULT_INLINE_BUDGET_BYTES = 8 * 1024 * 1024;
/**
 * Due keys the in-memory index holds at most (see the header); past it leases
 * scan LevelDB. ~80–100 bytes a key in V8 (a 32-character string and its slot;
 * measured 78), so 8–10 MB per queue at the cap, while a queue of 100,000 messages holds at least
 * that many KB of bodies on disk. Far above what a busy queue holds in steady
 * state (messages in flight, retries and scheduled sends), so the scan path is
 * the path of long outages only, where a lease per second or so is nothing.
 */
export const DEFAULT_DUE_INDEX_MAX = 100_000;
/**
 * How often a lease first scans the due keys ≤ now (up to DUE_INDEX_CHECK_KEYS)
 * and adds any the in-memory index lacks, with a warning: one iterator per
 * 10 s (~1 per 5,000 messages at full speed) to turn a missed update into a
 * delay of seconds and a log line instead of a message never leased.
 */
const DUE_INDEX_CHECK_MS = 10_000;
const DUE_INDEX_CHECK_KEYS = 1_000;
/** After a rebuild found the queue over the cap after all, leases scan LevelDB at least this long before trying again. */
const DUE_INDEX_REBUILD_RETRY_MS = 10_000;
/** Longest a message can wait behind the lease scan cursor (see dueKeys). */
const FULL_SCAN_INTERVAL_MS = 250;
/** Width of the zero-padded due time in keys: ms timestamps stay 13 digits until year 2286. */
const DUE_WIDTH = 15;
/** A due key's value: the key is all; one shared empty Buffer (LevelDB copies what it writes) rather than one a message. */
const NO_VALUE = Buffer.alloc(0);

/**
 * Where a body is: `inline`, the record's b! value; `file`, blobs/<name>. A handed-over body (see
 * the header) is the record's own b! value (the head) followed by another record's b! value from
 * `tail.start`, or by the blob file from `from`.
 */
export type BodyRef = { kind: 'inline'; size: number; tail?: BodyTail } | { kind: 'file'; name: string; size: number; from?: number };
export interface BodyTail {
  /** The b! key of the record that handed its body over. */
  key: string;
  start: number;
}
/** A body handed over by `DurableQueue.handOver`: its b! key or its blob file, from `start`, `size` bytes. */
export type HandOver = ({ key: string } | { file: string }) & { start: number; size: number };

export interface QueueRecord<M> {
  id: string;
  enqueuedAt: number;
  due: number;
  attempts: number;
  /** > 0 while leased: the time the lease expires. */
  leasedUntil: number;
  meta: M;
  body: BodyRef;
  /** Handler failures so far (common/dead-letter.ts); absent = none. */
  failures?: number;
  /** The last handler failure, in words. */
  lastError?: string;
  /** Failed records only: when it was moved out of the queue. */
  failedAt?: number;
}

/** A message whose body is on disk (inline bytes held, or file fsynced) but not yet committed. */
export interface Prepared<M> {
  record: QueueRecord<M>;
  ops: BatchOp[];
  /** Removes a written blob file when the message is not committed after all. */
  discard(): Promise<void>;
}

export interface EnqueueInput<M> {
  /**
   * The record's meta, or a function that makes it once the body has been read, for a meta
   * that says something found in the body (what the listener's DATA check saw: common/smtp-intake.ts).
   * A meta is JSON, never itself a function.
   */
  meta: M | (() => M);
  /** The bytes, a stream of them, or their chunk batches (an intake's DATA through its checks: stream-batches.ts). */
  body: Buffer | Readable | ChunkBatches;
  due?: number;
  id?: string;
  /** Stop reading and fail when the body exceeds this many bytes. */
  maxBytes?: number;
  /** `body` (a Buffer: the head) is followed by a handed-over body (see the header). */
  tail?: HandOver;
}

export { TooLargeError as BodyTooLargeError };

let idCounter = 0;
/** Queue ids: time-ordered, unique per process and across restarts (random suffix). */
export function newQueueId(now = Date.now()): string {
  idCounter = (idCounter + 1) % 46656;
  return now.toString(36).toUpperCase().padStart(9, '0') + idCounter.toString(36).toUpperCase().padStart(3, '0') + randomHex(4).toUpperCase();
}

function padDue(due: number): string {
  return Math.max(0, Math.floor(due)).toString().padStart(DUE_WIDTH, '0');
}

export interface QueueOptions<M> {
  inlineMaxBytes?: number;
  /** Default DEFAULT_INLINE_BUDGET_BYTES (see there). */
  inlineBudgetBytes?: number;
  clock?: () => number;
  /**
   * Counts waiting (not leased) records for which this is true, kept up to date
   * on open, lease, nack and remove so a status page does not read the whole
   * queue (the forwarder's "deferred": given back with an error). Evaluated on
   * records given back and on open; a new record is never counted.
   */
  tally?: (rec: QueueRecord<M>) => boolean;
  /** Default DEFAULT_DUE_INDEX_MAX (see there); 0 = always scan LevelDB (tests of that path). */
  dueIndexMax?: number;
  /** Default DUE_INDEX_CHECK_MS (see there); tests shorten it. */
  dueIndexCheckMs?: number;
}

export class DurableQueue<M> {
  private readonly prefix: string;
  private readonly inlineMax: number;
  private readonly inlineBudget: number;
  /** Bytes held right now by bodies being read that may still stay inline, or gathered for a blob write (see DEFAULT_INLINE_BUDGET_BYTES). */
  private inlineHeld = 0;
  private readonly hold: HoldBudget = {
    take: (n) => {
      if (this.inlineHeld + n > this.inlineBudget) return false;
      this.inlineHeld += n;
      return true;
    },
    give: (n) => {
      this.inlineHeld -= n;
    },
  };
  private readonly now: () => number;
  private readonly leases = new Map<string, number>();
  private waiters: Array<() => void> = [];
  private leaseChain: Promise<unknown> = Promise.resolve();
  /** Where the next lease scan of the due index starts (see dueKeys). */
  private scanFrom: string | undefined;
  private fullScanAt = 0;
  private _size = 0;
  private _failed = 0;
  private _tallied = 0;
  /** tally() of each record between nackOps and nacked. */
  private readonly nackTally = new Map<string, boolean>();
  private readonly tally: ((rec: QueueRecord<M>) => boolean) | undefined;
  /** `q!<queue>!d!`: what precedes a due key's `<due>!<id>`. */
  private readonly dPrefix: string;
  /** The due index in memory, keys without dPrefix (see the header); undefined while leases scan LevelDB. */
  private due: SortedKeys | undefined;
  private readonly dueMax: number;
  /** Ops on due keys committed while a rebuild scans: applied on top of its result. */
  private replay: BatchOp[] | undefined;
  /** Due keys changed while a check scans: not judged by it. */
  private touched: Set<string> | undefined;
  /** Bumped when the store reopened: a rebuild or check begun before it is void. */
  private generation = 0;
  private rebuildAfter = 0;
  private checkAt = 0;
  private readonly checkMs: number;

  private constructor(
    readonly store: Store,
    readonly name: string,
    opts: QueueOptions<M>,
  ) {
    this.prefix = `q!${name}!`;
    this.inlineMax = opts.inlineMaxBytes ?? DEFAULT_INLINE_MAX_BYTES;
    this.inlineBudget = opts.inlineBudgetBytes ?? DEFAULT_INLINE_BUDGET_BYTES;
    this.now = opts.clock ?? Date.now;
    this.tally = opts.tally;
    this.dPrefix = `${this.prefix}d!`;
    this.dueMax = opts.dueIndexMax ?? DEFAULT_DUE_INDEX_MAX;
    this.checkMs = opts.dueIndexCheckMs ?? DUE_INDEX_CHECK_MS;
    store.observe(this.dPrefix, { op: (op) => this.dueOp(op), reopened: () => this.dropIndex() });
  }

  /** Opens the queue: counts messages and returns crashed leases to the due index. */
  static async open<M>(store: Store, name: string, opts: QueueOptions<M> = {}): Promise<DurableQueue<M>> {
    const q = new DurableQueue<M>(store, name, opts);
    await q.recover();
    return q;
  }

  get size(): number {
    return this._size;
  }

  /** Failed records (dead letters) held apart from the queue. */
  get failedCount(): number {
    return this._failed;
  }

  /** Waiting records that satisfy `QueueOptions.tally` (0 without one). */
  get tallied(): number {
    return this._tallied;
  }

  private mKey(id: string): string {
    return `${this.prefix}m!${id}`;
  }
  private bKey(id: string): string {
    return `${this.prefix}b!${id}`;
  }
  private dKey(due: number, id: string): string {
    return `${this.prefix}d!${padDue(due)}!${id}`;
  }
  private fKey(id: string): string {
    return `${this.prefix}f!${id}`;
  }

  private async recover(): Promise<void> {
    const now = this.now();
    const ops: BatchOp[] = [];
    let count = 0;
    for await (const [, value] of this.store.db.iterator({ gte: `${this.prefix}m!`, lt: `${this.prefix}m~` })) {
      count++;
      const rec = JSON.parse(value.toString('utf8')) as QueueRecord<M>;
      if (rec.leasedUntil > 0) {
        ops.push({ type: 'del', key: this.dKey(rec.due, rec.id) });
        rec.due = now;
        rec.leasedUntil = 0;
        ops.push(...this.recordOps(rec));
      }
      if (this.tally?.(rec)) this._tallied++;
    }
    this._size = count;
    for await (const key of this.store.db.keys({ gte: `${this.prefix}f!`, lt: `${this.prefix}f~` })) if (key) this._failed++;
    await this.store.commit(ops, { sync: true });
    if (this.dueMax > 0) await this.rebuild(now);
  }

  /** A committed op on one of our due keys (Store.observe): kept in the in-memory index. */
  private dueOp(op: BatchOp): void {
    const k = op.key.slice(this.dPrefix.length);
    this.touched?.add(k);
    if (this.replay) this.replay.push(op);
    else if (this.due) this.applyDue(this.due, op.type, k);
  }

  private applyDue(due: SortedKeys, type: 'put' | 'del', k: string): void {
    if (type === 'del') due.delete(k);
    else if (due.size < this.dueMax || due.has(k)) due.add(k);
    else {
      this.dropIndex();
      this.store.log?.info({ event: 'due-index-over-cap', queue: this.name, max: this.dueMax }, 'queue over the in-memory due index cap: leases scan LevelDB until it is back under half');
    }
  }

  /** From now on leases scan LevelDB, until a rebuild (see leaseNow). */
  private dropIndex(): void {
    this.due = undefined;
    this.replay = undefined;
    this.generation++;
    this.scanFrom = undefined;
  }

  /**
   * Builds the in-memory index from a scan of the due range. The scan reads a
   * snapshot taken when its iterator is created, after `replay` starts
   * collecting: every op committed after the snapshot is replayed, and one
   * already in it replays to the same result (a put or del of one exact key).
   */
  private async rebuild(now: number): Promise<void> {
    const gen = ++this.generation;
    const replay: BatchOp[] = (this.replay = []);
    let keys: string[];
    try {
      keys = await this.store.db.keys({ gte: this.dPrefix, lt: `${this.prefix}d~`, limit: this.dueMax + 1 }).all();
    } finally {
      if (gen === this.generation) this.replay = undefined;
    }
    if (gen !== this.generation) return; // the store reopened meanwhile: the next lease tries again
    if (keys.length > this.dueMax) {
      this.rebuildAfter = now + DUE_INDEX_REBUILD_RETRY_MS;
      this.store.log?.info({ event: 'due-index-over-cap', queue: this.name, max: this.dueMax }, 'queue over the in-memory due index cap: leases scan LevelDB until it is back under half');
      return;
    }
    const due = SortedKeys.fromSorted(keys.map((k) => k.slice(this.dPrefix.length)));
    this.due = due;
    for (const op of replay) if (this.due) this.applyDue(due, op.type, op.key.slice(this.dPrefix.length));
  }

  /**
   * The safety net (DUE_INDEX_CHECK_MS): due keys on disk that the index lacks
   * are added, with a warning. Keys changed while the scan runs are left to
   * their own updates (the scan may predate them).
   */
  private async check(now: number): Promise<void> {
    this.checkAt = now + this.checkMs;
    const gen = this.generation;
    const touched = (this.touched = new Set<string>());
    let keys: string[];
    try {
      keys = await this.store.db.keys({ gte: this.dPrefix, lt: this.dPrefix + padDue(now + 1), limit: DUE_INDEX_CHECK_KEYS }).all();
    } finally {
      this.touched = undefined;
    }
    const due = this.due;
    if (!due || gen !== this.generation) return;
    const missed = keys.map((k) => k.slice(this.dPrefix.length)).filter((k) => !touched.has(k) && !due.has(k));
    if (missed.length === 0) return;
    this.store.log?.warn({ event: 'due-index-missed', queue: this.name, keys: missed.length, first: missed.slice(0, 5) }, 'due keys on disk were missing from the in-memory index (a write that bypassed the store?): added');
    for (const k of missed) if (this.due === due) this.applyDue(due, 'put', k);
  }

  private recordOps(rec: QueueRecord<M>): BatchOp[] {
    return [
      { type: 'put', key: this.mKey(rec.id), value: Buffer.from(JSON.stringify(rec)) },
      { type: 'put', key: this.dKey(rec.due, rec.id), value: NO_VALUE },
    ];
  }

  /**
   * Writes the body (inline buffer or fsynced file) and returns the batch ops
   * that will enqueue it; nothing is visible until those ops are committed.
   */
  async prepare(input: EnqueueInput<M>): Promise<Prepared<M>> {
    const id = input.id ?? newQueueId(this.now());
    const now = this.now();
    const limit = input.maxBytes ?? Infinity;
    let body: BodyRef;
    let inline: Buffer | undefined;
    if (input.tail) {
      if (!Buffer.isBuffer(input.body)) throw new Error('a body with a tail takes its head as a Buffer');
      const t = input.tail;
      const size = input.body.length + t.size;
      if (size > limit) throw new TooLargeError(limit);
      body = 'key' in t ? { kind: 'inline', size, tail: { key: t.key, start: t.start } } : { kind: 'file', name: t.file, size, from: t.start };
      inline = input.body;
    } else if (Buffer.isBuffer(input.body)) {
      if (input.body.length > limit) throw new TooLargeError(limit);
      if (input.body.length <= this.inlineMax) {
        body = { kind: 'inline', size: input.body.length };
        inline = input.body;
      } else {
        body = await this.writeBlob(id, [input.body], limit);
      }
    } else {
      const r = await this.readSmallOrSpill(id, input.body, limit);
      body = r.body;
      inline = r.inline;
    }
    const store = this.store;
    // A handed-over file is still the other record's: only a file this prepare wrote goes.
    const discard = async (): Promise<void> => {
      if (body.kind === 'file' && body.from === undefined) await store.removeBlob(body.name);
    };
    let meta: M;
    try {
      meta = typeof input.meta === 'function' ? (input.meta as () => M)() : input.meta;
    } catch (e) {
      await discard();
      throw e;
    }
    const record: QueueRecord<M> = { id, enqueuedAt: now, due: input.due ?? now, attempts: 0, leasedUntil: 0, meta, body };
    const ops = this.recordOps(record);
    if (inline) ops.push({ type: 'put', key: this.bKey(id), value: inline });
    return { record, ops, discard };
  }

  /**
   * Buffers up to inlineMax bytes; past that, or past the queue's inline budget,
   * spills everything to a blob file.
   */
  private async readSmallOrSpill(id: string, source: Readable | ChunkBatches, limit: number): Promise<{ body: BodyRef; inline?: Buffer }> {
    const chunks: Buffer[] = [];
    let size = 0;
    /** Our share of inlineHeld, given back however this ends. */
    let held = 0;
    const release = (): void => {
      this.hold.give(held);
      held = 0;
    };
    // Batches of the chunks as they came (stream-batches.ts), not a Readable's iterator, which
    // copies all that is buffered into one new Buffer at each read.
    const it = source instanceof Readable ? chunkBatches(source) : source;
    try {
      for (;;) {
        const { value: batch, done } = await it.next();
        if (done) break;
        for (let i = 0; i < batch.length; i++) {
          const value = batch[i]!;
          size += value.length;
          chunks.push(value);
          if (size > limit) {
            release();
            // Read the rest without keeping it: an SMTP session must reach the final
            // dot to answer 552 and stay usable (RFC 5321 4.5.3.1.10).
            for (;;) if ((await it.next()).done) break;
            throw new TooLargeError(limit);
          }
          if (size <= this.inlineMax && this.hold.take(value.length)) {
            held += value.length;
            continue;
          }
          release();
          const batchRest = batch.splice(i + 1);
          batch.length = 0; // its first chunks are in `chunks`
          return { body: await this.spill(id, chunks, batchRest, it, limit) };
        }
      }
    } finally {
      release();
    }
    const inline = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    return { body: { kind: 'inline', size }, inline };
  }

  /**
   * Writes the chunks read so far, the rest of their batch and the rest of the body to a
   * blob file, a batch at a time: the writer gathers within the queue's budget and asks
   * for the next batch only when it has written what it holds, so a disk slower than the
   * network holds back the stream (whose high-water mark bounds a batch). The arrays are
   * emptied as they are handed over (splice): kept by the caller's frame until the end of
   * the copy, the first 256 KiB of every large body in flight stayed in memory (issue #17).
   */
  private spill(id: string, chunks: Buffer[], batchRest: Buffer[], it: AsyncIterator<Buffer[]>, limit: number): Promise<BodyRef> {
    const rest = (async function* () {
      yield chunks.splice(0);
      if (batchRest.length > 0) yield batchRest.splice(0);
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value;
      }
    })();
    return this.writeBlob(id, rest, limit);
  }

  private async writeBlob(id: string, source: Iterable<Buffer> | AsyncIterable<Buffer | readonly Buffer[]>, limit: number): Promise<BodyRef> {
    const name = `${this.name}-${id}`;
    const size = await writeFileSynced(this.store.blobPath(name), source, limit, this.hold);
    this.store.markBlobCreated(name);
    return { kind: 'file', name, size };
  }

  /** Makes prepared messages visible; with `sync` (the default) durably. */
  async commitPrepared(prepared: Prepared<M>[], extraOps: BatchOp[] = [], sync = true): Promise<void> {
    // One message and nothing else (every intake's accept at the forwarder): its own ops, no copy.
    const ops = prepared.length === 1 && extraOps.length === 0 ? prepared[0]!.ops : [...prepared.flatMap((p) => p.ops), ...extraOps];
    await this.store.commit(ops, { sync });
    this.added(prepared.length);
  }

  /** Called by whoever committed `prepare` ops for this queue through another queue's batch. */
  added(n: number): void {
    this._size += n;
    if (n > 0) this.wake();
  }

  async enqueue(input: EnqueueInput<M>): Promise<QueueRecord<M>> {
    const p = await this.prepare(input);
    try {
      await this.commitPrepared([p]);
    } catch (e) {
      await p.discard();
      throw e;
    }
    return p.record;
  }

  /**
   * Leases up to `max` due messages for `visibilityMs`. Until acked or nacked,
   * they are invisible; after the timeout they are due again.
   */
  lease(max: number, visibilityMs: number): Promise<QueueRecord<M>[]> {
    // Serialized so two callers never lease the same message.
    const run = this.leaseChain.then(() => this.leaseNow(max, visibilityMs));
    this.leaseChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Due keys ≤ now, in due order, from the scan cursor (or from the start):
   * the lease path while the in-memory index is off (over its cap; see the header).
   *
   * Why a cursor: LevelDB keeps a tombstone for every removed key until
   * compaction reaches the bottom level, and every leased or removed message
   * leaves one in the due index. Under load a scan from the start walked
   * thousands of them per lease (LevelDB's MemTableIterator::key was the
   * hottest native symbol in a perf profile of the forwarder). Every due key
   * before the last one leased was leased too, so the next scan starts there.
   * A key can still land behind the cursor (a commit that finished late, a
   * clock step back), so a scan that finds nothing from the cursor, and any
   * scan after FULL_SCAN_INTERVAL_MS, starts from the beginning.
   */
  private async dueKeys(now: number, max: number): Promise<string[]> {
    const end = `${this.prefix}d!${padDue(now + 1)}`;
    const full = this.scanFrom === undefined || now >= this.fullScanAt;
    // all() reads up to `limit` keys in one trip to the thread pool; a for-await loop makes two
    // (classic-level's first next() fetches a single entry), and this runs for every lease (issue #17).
    const keys = await this.store.db.keys({ gte: full ? `${this.prefix}d!` : this.scanFrom, lt: end, limit: max }).all();
    if (full) this.fullScanAt = now + FULL_SCAN_INTERVAL_MS;
    else if (keys.length === 0) {
      this.scanFrom = undefined;
      return this.dueKeys(now, max);
    }
    this.scanFrom = keys.at(-1);
    return keys;
  }

  private async leaseNow(max: number, visibilityMs: number): Promise<QueueRecord<M>[]> {
    const now = this.now();
    if (!this.due && this.dueMax > 0 && this._size <= this.dueMax / 2 && now >= this.rebuildAfter) await this.rebuild(now);
    if (this.due && now >= this.checkAt) await this.check(now);
    const keys = this.due ? this.due.below(padDue(now + 1), max).map((k) => this.dPrefix + k) : await this.dueKeys(now, max);
    if (keys.length === 0) return [];
    const ids = keys.map((k) => k.slice(k.lastIndexOf('!') + 1));
    const values = this.store.getManyNow(ids.map((id) => this.mKey(id))); // on this thread: see store.ts
    const ops: BatchOp[] = [];
    const out: QueueRecord<M>[] = [];
    const until = now + visibilityMs;
    let untallied = 0;
    values.forEach((v, i) => {
      const key = keys[i]!;
      if (!v) {
        ops.push({ type: 'del', key }); // index entry without record: left by a crash mid-removal
        return;
      }
      const rec = JSON.parse(v.toString('utf8')) as QueueRecord<M>;
      if (key.slice(this.dPrefix.length, this.dPrefix.length + DUE_WIDTH) !== padDue(rec.due)) {
        // Not the record's due key: one whose removal has landed but not yet reached the
        // in-memory index (or one left by a crash): leasing it would lease the message twice.
        ops.push({ type: 'del', key });
        return;
      }
      if (rec.leasedUntil === 0 && this.tally?.(rec)) untallied++;
      ops.push({ type: 'del', key });
      rec.due = until;
      rec.leasedUntil = until;
      rec.attempts++;
      ops.push(...this.recordOps(rec));
      this.leases.set(rec.id, until);
      out.push(rec);
    });
    await this.store.commit(ops, { sync: false });
    this._tallied -= untallied;
    return out;
  }

  /** Still ours? False when the visibility timeout expired and the message may be leased again. */
  holds(rec: QueueRecord<M>): boolean {
    return this.leases.get(rec.id) === rec.leasedUntil;
  }

  /**
   * Ops that remove a leased message; commit them together with whatever replaced it.
   * `keepBody`: its body was handed over (`handOver`) to a record committed in the same batch,
   * which owns its key or file from then on.
   */
  removeOps(rec: QueueRecord<M>, keepBody = false): BatchOp[] {
    return [{ type: 'del', key: this.mKey(rec.id) }, { type: 'del', key: this.dKey(rec.due, rec.id) }, ...this.bodyDels(rec, keepBody)];
  }

  /**
   * The body of `rec` from `start` on, for a record of another queue to refer to (EnqueueInput.tail)
   * instead of holding a copy; commit that record with this one's removal with `keepBody`.
   */
  handOver(rec: QueueRecord<M>, start: number): HandOver {
    const b = rec.body;
    const size = b.size - start;
    if (b.kind === 'inline' && !b.tail) return { key: this.bKey(rec.id), start, size };
    if (b.kind === 'file' && b.from === undefined) return { file: b.name, start, size };
    throw new Error(`queue ${this.name}: only a body of its own can be handed over (${rec.id})`);
  }

  /** The keys a record's body holds: its b! value (unless handed over), a handed-over body's head and tail. */
  private bodyDels(rec: QueueRecord<M>, keepBody: boolean): BatchOp[] {
    const b = rec.body;
    const ops: BatchOp[] = [];
    // The own b! value: an inline body (unless it was just handed over), or a handed-over file's head.
    const ownValue = b.kind === 'inline' ? !keepBody : b.from !== undefined;
    if (ownValue) ops.push({ type: 'del', key: this.bKey(rec.id) });
    if (b.kind === 'inline' && b.tail) ops.push({ type: 'del', key: b.tail.key });
    return ops;
  }

  /** Completes a removal done through `removeOps`: forgets the lease, deletes the blob file (not one handed over). */
  async removed(rec: QueueRecord<M>, keepBody = false): Promise<void> {
    this.leases.delete(rec.id);
    this._size--;
    if (rec.body.kind === 'file' && !keepBody) await this.store.removeBlob(rec.body.name);
  }

  /**
   * Ops that change the metadata of a message we hold leased (progress of a long
   * job, committed with the job's output); returns the record to use from then on.
   */
  updateMetaOps(rec: QueueRecord<M>, meta: M): { rec: QueueRecord<M>; ops: BatchOp[] } {
    const next: QueueRecord<M> = { ...rec, meta };
    return { rec: next, ops: [{ type: 'put', key: this.mKey(rec.id), value: Buffer.from(JSON.stringify(next)) }] };
  }

  /**
   * Done with a message: delete it. `extraOps` commit in the same batch (e.g. the next stage's
   * enqueue); `keepBody` as in removeOps.
   */
  async ack(rec: QueueRecord<M>, extraOps: BatchOp[] = [], sync = false, keepBody = false): Promise<boolean> {
    if (!this.holds(rec)) return false;
    await this.store.commit([...this.removeOps(rec, keepBody), ...extraOps], { sync });
    await this.removed(rec, keepBody);
    return true;
  }

  /** Gives a leased message back, due at `due`, optionally with updated metadata. */
  async nack(rec: QueueRecord<M>, due: number, meta?: M, extraOps: BatchOp[] = []): Promise<boolean> {
    if (!this.holds(rec)) return false;
    await this.store.commit([...this.nackOps(rec, due, meta), ...extraOps], { sync: false });
    this.nacked(rec);
    return true;
  }

  /**
   * Gives a leased message back without counting the lease as an attempt: for a
   * message that never reached a server because the next hop is down (the
   * relay's state, not the message's; see relay-health.ts).
   */
  release(rec: QueueRecord<M>, due: number): Promise<boolean> {
    return this.nack({ ...rec, attempts: Math.max(0, rec.attempts - 1) }, due);
  }

  /** Ops that give a leased message back (see `nack`); commit them in any batch, then call `nacked`. */
  nackOps(rec: QueueRecord<M>, due: number, meta?: M): BatchOp[] {
    const next: QueueRecord<M> = { ...rec, due, leasedUntil: 0, meta: meta ?? rec.meta };
    if (this.tally) this.nackTally.set(rec.id, this.tally(next));
    return [{ type: 'del', key: this.dKey(rec.due, rec.id) }, ...this.recordOps(next)];
  }

  /** Completes a give-back done through `nackOps`. */
  nacked(rec: QueueRecord<M>): void {
    if (this.nackTally.get(rec.id)) this._tallied++;
    this.nackTally.delete(rec.id);
    this.leases.delete(rec.id);
    this.wake();
  }

  /**
   * Admin actions on a message that is waiting (not leased): make it due at
   * `due` (retry now), or remove it. Both return false when the message is
   * unknown or in flight (a lease is the sender's; it will ack or nack).
   */
  async reschedule(id: string, due: number): Promise<boolean> {
    const rec = await this.get(id);
    if (!rec || rec.leasedUntil > 0 || this.leases.has(id)) return false;
    const next: QueueRecord<M> = { ...rec, due };
    await this.store.commit([{ type: 'del', key: this.dKey(rec.due, rec.id) }, ...this.recordOps(next)], { sync: true });
    this.wake();
    return true;
  }

  /** `extraOps` commit in the same batch (the dashboard's drop writes its event there). */
  async remove(id: string, extraOps: BatchOp[] = []): Promise<boolean> {
    const rec = await this.get(id);
    if (!rec || rec.leasedUntil > 0 || this.leases.has(id)) return false;
    await this.store.commit([...this.removeOps(rec), ...extraOps], { sync: true });
    await this.removed(rec);
    if (this.tally?.(rec)) this._tallied--;
    return true;
  }

  /**
   * Ops that move a leased message to the failed records (its body stays where
   * it is); commit them with the `failed` event, then call `failedMoved`.
   */
  failOps(rec: QueueRecord<M>, error: string, at: number): BatchOp[] {
    const dead: QueueRecord<M> = { ...rec, leasedUntil: 0, lastError: error, failedAt: at };
    return [
      { type: 'del', key: this.mKey(rec.id) },
      { type: 'del', key: this.dKey(rec.due, rec.id) },
      { type: 'put', key: this.fKey(rec.id), value: Buffer.from(JSON.stringify(dead)) },
    ];
  }

  /** Completes a move done through `failOps`. */
  failedMoved(rec: QueueRecord<M>): void {
    this.leases.delete(rec.id);
    this._size--;
    this._failed++;
  }

  async getFailed(id: string): Promise<QueueRecord<M> | undefined> {
    const v = await this.store.db.get(this.fKey(id));
    return v ? (JSON.parse(v.toString('utf8')) as QueueRecord<M>) : undefined;
  }

  /** Iterates the failed records, oldest id first. */
  async *failedRecords(): AsyncGenerator<QueueRecord<M>> {
    for await (const [, v] of this.store.db.iterator({ gte: `${this.prefix}f!`, lt: `${this.prefix}f~` })) {
      yield JSON.parse(v.toString('utf8')) as QueueRecord<M>;
    }
  }

  /** Puts a failed record back in the queue, due at `due`, with a fresh count of attempts. */
  async retryFailed(id: string, due: number): Promise<boolean> {
    const rec = await this.getFailed(id);
    if (!rec) return false;
    const { failedAt: _at, ...rest } = rec;
    const next: QueueRecord<M> = { ...rest, due, attempts: 0, failures: 0, leasedUntil: 0 };
    await this.store.commit([{ type: 'del', key: this.fKey(id) }, ...this.recordOps(next)], { sync: true });
    this._failed--;
    this.added(1);
    return true;
  }

  /** Deletes a failed record and its body. */
  async deleteFailed(id: string): Promise<boolean> {
    const rec = await this.getFailed(id);
    if (!rec) return false;
    const ops: BatchOp[] = [{ type: 'del', key: this.fKey(id) }];
    ops.push(...this.bodyDels(rec, false));
    await this.store.commit(ops, { sync: true });
    this._failed--;
    if (rec.body.kind === 'file') await this.store.removeBlob(rec.body.name);
    return true;
  }

  /** The body as a stream (file bodies are never loaded whole). */
  async openBody(rec: QueueRecord<M>): Promise<Readable> {
    const b = rec.body;
    if (b.kind === 'inline') return Readable.from([await this.readInline(rec)]);
    if (b.from === undefined) return this.store.readBlob(b.name);
    const head = this.head(rec);
    const { store } = this;
    const { name, from } = b;
    return Readable.from(
      (async function* () {
        yield head;
        yield* store.readBlob(name, from) as AsyncIterable<Buffer>;
      })(),
      { objectMode: false },
    );
  }

  /**
   * The body for a writer that takes either (smtp-session.ts BodySource): an inline
   * body as the Buffers it is read into anyway (a handed-over one as its head and the
   * other record's bytes, not copied into one), a file body as a stream.
   */
  async sendableBody(rec: QueueRecord<M>): Promise<Buffer[] | Readable> {
    return rec.body.kind === 'inline' ? this.inlinePieces(rec) : this.openBody(rec);
  }

  /** The whole body in memory: only for small bodies or tests. */
  async readBody(rec: QueueRecord<M>): Promise<Buffer> {
    const b = rec.body;
    if (b.kind === 'inline') return this.readInline(rec);
    const file = await fsp.readFile(this.store.blobPath(b.name));
    return b.from === undefined ? file : Buffer.concat([this.head(rec), file.subarray(b.from)]);
  }

  /** The record's own b! value: an inline body, or a handed-over body's head. */
  private head(rec: QueueRecord<M>): Buffer {
    // A body written moments ago, in the memtable: read on this thread (see store.ts).
    const v = this.store.getNow(this.bKey(rec.id));
    if (!v) throw new Error(`queue ${this.name}: body of ${rec.id} is missing`);
    return v;
  }

  private async readInline(rec: QueueRecord<M>): Promise<Buffer> {
    const pieces = this.inlinePieces(rec);
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, rec.body.size);
  }

  /** An inline body: its b! value, followed for a handed-over body by the other record's bytes. */
  private inlinePieces(rec: QueueRecord<M>): Buffer[] {
    const v = this.head(rec);
    if (rec.body.kind !== 'inline' || !rec.body.tail) return [v];
    const t = this.store.getNow(rec.body.tail.key);
    if (!t || v.length + t.length - rec.body.tail.start !== rec.body.size) throw new Error(`queue ${this.name}: body tail of ${rec.id} (${rec.body.tail.key}) is missing or not ${rec.body.size - v.length} bytes`);
    return [v, t.subarray(rec.body.tail.start)];
  }

  async get(id: string): Promise<QueueRecord<M> | undefined> {
    const v = await this.store.db.get(this.mKey(id));
    return v ? (JSON.parse(v.toString('utf8')) as QueueRecord<M>) : undefined;
  }

  /** Due time of the earliest message (leased ones included: their lease expiry). */
  async nextDue(): Promise<number | undefined> {
    if (this.due) {
      const first = this.due.first();
      return first === undefined ? undefined : Number(first.slice(0, DUE_WIDTH));
    }
    for await (const key of this.store.db.keys({ gte: `${this.prefix}d!`, lt: `${this.prefix}d~`, limit: 1 })) {
      return Number(key.slice(this.prefix.length + 2, this.prefix.length + 2 + DUE_WIDTH));
    }
    return undefined;
  }

  /** The record with the smallest id: the oldest, as ids from newQueueId start with the enqueue time. One seek. */
  async oldest(): Promise<QueueRecord<M> | undefined> {
    for await (const [, v] of this.store.db.iterator({ gte: `${this.prefix}m!`, lt: `${this.prefix}m~`, limit: 1 })) {
      return JSON.parse(v.toString('utf8')) as QueueRecord<M>;
    }
    return undefined;
  }

  /** Iterates every record (for admin listings). */
  async *records(): AsyncGenerator<QueueRecord<M>> {
    for await (const [, v] of this.store.db.iterator({ gte: `${this.prefix}m!`, lt: `${this.prefix}m~` })) {
      yield JSON.parse(v.toString('utf8')) as QueueRecord<M>;
    }
  }

  /**
   * Resolves when something may be due: an enqueue/nack in this process, the
   * earliest due time, or `maxWaitMs`, whichever is first.
   */
  async waitForWork(maxWaitMs: number, signal?: AbortSignal): Promise<void> {
    const next = await this.nextDue();
    const wait = next === undefined ? maxWaitMs : Math.min(maxWaitMs, Math.max(0, next - this.now()));
    if (wait === 0 || signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, wait);
      this.waiters.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
}
