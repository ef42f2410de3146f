/*
 * store.ts — one LevelDB per process, with group commit and a blob folder.
 *
 * Every stage keeps its queues (spool, intake, delivery, …) as key ranges of one
 * `classic-level` database under <data>/<stage>/db, so that moving a message from
 * one queue to the next is a single atomic batch.
 *
 * Group commit: a write that must be durable before we answer a peer
 * (`commit(ops, {sync: true})`) joins the group being formed while the previous
 * synced batch is in flight; the whole group is written as one batch with
 * `sync: true` (one fsync of the LevelDB log), and every member resolves when it
 * returns. Throughput therefore scales with concurrency instead of collapsing to
 * one fsync per message. Writes that only record progress (lease, ack, retry
 * times) go unsynced: they are in the log, so a killed process keeps them, and
 * losing them on power failure only means a message is tried once more.
 *
 * Blobs: bodies above `inlineMaxBytes` are streamed into files under
 * <data>/<stage>/blobs and fsynced before the batch that references them; the
 * folder itself is fsynced once per synced group, so a new file's directory
 * entry is durable before any reference to it. See durable-queue.ts for why
 * bodies are split between LevelDB values and files.
 *
 * Unsynced writes (leases, acks, retry times) coalesce the same way, without
 * the fsync: while one is in flight, the writes that arrive join the next batch.
 * Each LevelDB write is a trip to libuv's thread pool (a wake-up and a context
 * switch each way), and under load the pipeline made several per message: in
 * CPU profiles of `postino up` the hosted process spent ~12% of its busy time
 * in Store.write (issue #17). Members of one batch are written atomically and
 * in call order, so nothing a caller could observe changes but the batching.
 * An unsynced group is taken at the end of the event loop's turn (`nextTurn`,
 * setImmediate), not at once: by then every I/O callback the poll phase had
 * ready (each relay session's reply, each lease) has added its writes. With the
 * forwarder relaying while it takes mail (`bench -- forwarder-parts`, "both") that
 * halved its unsynced batches (9,700 → 4,450 over 33,000 messages) and took its
 * CPU per message from 0.413 / 0.356 / 0.336 to 0.374 / 0.305 / 0.326 ms (main
 * thread, three interleaved pairs). Nobody answers a peer after an unsynced write,
 * so the wait costs no reply any latency. Synced groups still go at once:
 * deferred the same way they were halved too, but at 100 KB the forwarder's p50
 * accept latency rose from 4.5–6.5 to 5.9–8.0 ms (the commit waited for the rest
 * of a poll phase full of body chunks while the fsync could have been running).
 *
 * Unsynced writes ride in the synced batch: when a synced group is taken, the
 * unsynced commits waiting for their turn go in the same batch (before it, in
 * their call order) and resolve with it, unless an unsynced batch is in flight
 * (they must land after it). While a batch carrying such riders is in flight,
 * later unsynced commits wait for it, for the same reason: the unsynced stream
 * lands in call order whichever batch carries it. Under intake load a synced
 * group is nearly always forming, so most leases and acks of the relay stop
 * costing batches of their own (each a trip to the thread pool and a promise):
 * the forwarder taking 16,000 messages of 2 KB over reused connections while
 * relaying them wrote 1,179 unsynced batches instead of 2,707 (13,447 commits
 * rode), and took 4,291 against 4,001 msgs/s, its main thread 0.217 against
 * 0.233 ms a message (medians of 18 rounds, six interleaved pairs; issue #17).
 * A rider waits for an fsync it did not need (a lease starts its relay a
 * millisecond or two later); nothing waits when no synced group is going (a
 * drain of the queue after an outage writes as before). Nothing is weaker: a
 * rider is written synced. Riders are taken up to RIDERS_MAX_BYTES, from the
 * first queued on, so that a large background write (an import, a sweep) does
 * not hold up the fsync that clients' replies wait for; those after it keep
 * their own batch.
 *
 * Reads on the per-message path (`getNow`, `getManyNow`): LevelDB's Get run
 * on the calling thread (classic-level's getSync) instead of a trip to libuv's
 * thread pool. Those reads are of keys written moments ago (a body, a queue
 * record: in the memtable) or of keys that are mostly absent (a suppression, a
 * recipient: the bloom filters of the tables, 10 bits a key, answer from
 * memory), so the Get itself takes microseconds while the hand-off to the pool
 * and back took a wake-up and a context switch each way: in profiles of
 * `postino up` the hosted process made ~8 such reads per message (issue #17).
 * What the read sees is the same (the latest write whose batch resolved); the
 * price is that a read that misses every cache blocks the event loop for a
 * page-cache or disk read, which is why bulk scans stay asynchronous. A read
 * while the database is closed for a reopen throws, as the async ones fail.
 *
 * Batches go to classic-level's own batch (`_batch`, the binding's batch_do)
 * rather than through abstract-level's public `batch()`, which clones,
 * validates and encodes every op (an object spread, encoding look-ups) before
 * handing them to the same function: ~4% of the hosted process in profiles
 * (issue #17). Our ops are already in the binding's form (a utf8 string key, a
 * Buffer value, `put` or `del`), this store uses no sublevels, hooks or write
 * events, and classic-level is pinned to an exact version (package.json). When
 * the database is not open (a reopen, a close) the public path runs, and fails
 * or waits as it should. Where classic-level looks as expected, the ops go one by
 * one into a native batch that each flow (synced, unsynced) clears and reuses,
 * instead of `_batch`'s property look-ups and new batch per call (native-batch.ts):
 * each flow has one write in flight at a time, so its batch is never refilled
 * while LevelDB still reads it.
 *
 * Write buffer: 32 MiB instead of LevelDB's 4 MiB. Queue entries are short-lived
 * (a message is usually relayed and deleted within seconds), so a larger memtable
 * means fewer flushes of data that is already dead and less compaction work;
 * measured with `npm run bench -- forwarder`, 100 KB messages went from 0.74 to
 * 0.91 of Postfix's rate. The cost is up to 2 × 32 MiB of memory per process.
 *
 * Write errors (issue #11): LevelDB keeps a failed write's error (disk full, an
 * I/O error in its log or a compaction) and refuses every later write until the
 * database is reopened. So on the first failed write the store goes *broken*:
 * commits fail at once with `451 4.3.0` (PostinoError SPOOL_WRITE_FAILED: the
 * intakes answer it, nothing is acknowledged that is not on disk), reads go on,
 * and the database is closed and reopened after REOPEN_BACKOFF_MS (the last
 * entry repeats), each time followed by a synced probe write; when the probe is
 * written the store is healthy again and intake resumes by itself. A message
 * refused meanwhile was never acknowledged; one acknowledged before is in the
 * log LevelDB replays at reopen. Reads and iterators in flight during the
 * close/open moment fail and are retried by their worker loops.
 * `writeFault` (options) is a test seam that fails writes as a full disk would.
 *
 * Commit observers (`observe`): a key range's ops are handed to its observer
 * after their commit succeeded, before the caller's promise resolves, so state
 * kept in memory next to a key range (a queue's due index) follows every write,
 * including ops a caller committed inside another batch.
 *
 * Side effects: creates and locks the database folder; fsyncs; timers while broken.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ClassicLevel } from 'classic-level';
import { PostinoError } from './errors.js';
import { fsyncPath } from './fsync.js';
import type { Logger } from './log.js';
import { nativeBatchWriter, type NativeBatchWriter } from './native-batch.js';
import { nextTurn } from './next-turn.js';
import { RecentBlobs } from './recent-blobs.js';

/**
 * Chunk size of reads from a blob file (delivery, the forwarder's relay, the rewrap's probes).
 * Each read is a thread-pool round trip: 1 MiB files read 300 times cost 0.83 ms of CPU per
 * MiB in 64 KiB reads (Node's default) and 0.47 ms in 256 KiB reads, with the allocator
 * settings `postino up` gives its processes (allocator-env.ts; this VM, issue #17); at 1 MB
 * the pipeline's Postino CPU was 15.4-18.4 s per 1,000 against 16.0-18.4 in two interleaved
 * pairs. The cost is memory after a run of large messages: with 100 messages of 10 MB the
 * hosted node's peak RSS was 259-261 MiB against 207-214 (forwarder 192-221 against 163-168;
 * bench big-messages), still flat in the number at once (the allocator keeps what it freed).
 */
export const BLOB_READ_BYTES = 256 * 1024;

/**
 * diskUsage() is read by every /status and /metrics scrape; walking a spool of
 * many blob files each time cost a scrape its latency and the event loop its
 * time. Within this age the last result is returned (a gauge, not a ledger).
 */
const DISK_USAGE_MAX_AGE_MS = 5_000;

/**
 * Most key and value bytes of unsynced commits that ride in one synced batch (see the header):
 * LevelDB's own grouping of concurrent writers stops at 1 MiB for the same reason, so that a
 * large write does not slow the small ones joined to it.
 */
const RIDERS_MAX_BYTES = 1024 * 1024;

/** See the header: short-lived entries, fewer memtable flushes. */
export const WRITE_BUFFER_BYTES = 32 * 1024 * 1024;

/**
 * Waits between reopen attempts of a broken database: a moment first (a transient
 * I/O error clears at once), then up to 30 s, so a full disk costs a log line and
 * an open() every 30 s while an operator frees space, and intake resumes within
 * 30 s of it.
 */
const REOPEN_BACKOFF_MS = [100, 500, 1_000, 2_000, 5_000, 10_000, 30_000] as const;
/** Written (synced) after a reopen to prove writes work again. */
const PROBE_KEY = 'store!write-probe';

export interface StoreOptions {
  /** Write failures and recoveries are logged here. */
  log?: Logger | undefined;
  /** Test seam: an error to fail the next write with (as ENOSPC would), or undefined to write. */
  writeFault?: (() => Error | undefined) | undefined;
}

export type BatchOp =
  | { type: 'put'; key: string; value: Buffer }
  | { type: 'del'; key: string };

/** classic-level's own batch, under abstract-level's checks (see the header). */
interface RawBatch {
  _batch(ops: BatchOp[], options: { sync: boolean }): Promise<void>;
}

/**
 * Told about the ops of one key range as they are committed (see `observe`):
 * `op` after the batch holding it was written, `reopened` after the database was
 * reopened following a write error (when a failed write may still have landed).
 */
export interface CommitObserver {
  op(op: BatchOp): void;
  reopened(): void;
}

interface Waiter {
  ops: BatchOp[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export interface StoreStats {
  syncedBatches: number;
  syncedOps: number;
  /** Unsynced batches written (each a trip to the thread pool; see the header). */
  unsyncedBatches: number;
  /** Unsynced commits written in a synced batch instead (see the header). */
  riders: number;
  /** Times the database was reopened after a write error. */
  reopens: number;
}

export class Store {
  readonly db: ClassicLevel<string, Buffer>;
  readonly blobDir: string;
  /** Blob files written moments ago, read on the calling thread (recent-blobs.ts). */
  private readonly recentBlobs: RecentBlobs;
  private pending: Waiter[] = [];
  private writing = false;
  /** Unsynced writes waiting for the one in flight (see the header). */
  private unsynced: Waiter[] = [];
  /** The unsynced loop runs (waiting for a turn's end, for riders to land, or writing). */
  private unsyncedWriting = false;
  /** An unsynced batch is in LevelDB's hands: the unsynced commits queued after it cannot ride (see the header). */
  private unsyncedInFlight = false;
  /** Settles when the synced batch carrying unsynced riders has landed; later unsynced commits wait for it. */
  private ridersLanded: Promise<void> | undefined;
  private blobDirDirty = false;
  readonly stats: StoreStats = { syncedBatches: 0, syncedOps: 0, unsyncedBatches: 0, riders: 0, reopens: 0 };
  private usage: { bytes: number; at: number } | undefined;
  private usageWalk: Promise<number> | undefined;
  /** Set from the first failed write until a reopen's probe write succeeds (see the header). */
  private broken: { since: number; error: string } | undefined;
  private recovering: Promise<void> | undefined;
  private closing = false;
  private wakeRecovery: (() => void) | undefined;
  /** Batches filled in place and reused, one for the synced flow and one for the unsynced (see the header); undefined: `_batch`. */
  private readonly nativeWriters: readonly [NativeBatchWriter, NativeBatchWriter] | undefined;
  /** Key prefix → observer (see `observe`). */
  private readonly observers = new Map<string, CommitObserver>();

  private constructor(
    readonly dir: string,
    private readonly options: StoreOptions,
  ) {
    this.db = new ClassicLevel<string, Buffer>(path.join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'buffer', writeBufferSize: WRITE_BUFFER_BYTES });
    this.blobDir = path.join(dir, 'blobs');
    this.recentBlobs = new RecentBlobs((name) => this.blobPath(name), BLOB_READ_BYTES);
    const synced = nativeBatchWriter(this.db);
    const unsynced = nativeBatchWriter(this.db);
    this.nativeWriters = synced && unsynced ? [synced, unsynced] : undefined;
  }

  static async open(dir: string, options: StoreOptions = {}): Promise<Store> {
    fs.mkdirSync(path.join(dir, 'blobs'), { recursive: true, mode: 0o700 });
    const s = new Store(dir, options);
    await s.db.open();
    return s;
  }

  /** The store's logger, for what keeps state next to it (durable-queue.ts). */
  get log(): Logger | undefined {
    return this.options.log;
  }

  /**
   * Calls `observer.op` for every op whose key starts with `prefix`, once the
   * commit holding it succeeded, before that commit's promise resolves, in the
   * order the commits were made; never for a failed commit. Every write goes
   * through `commit`, so an in-memory copy of a key range kept this way cannot
   * miss a change, whoever made it (durable-queue.ts keeps its due index so).
   * One observer per prefix: the last one set replaces the one before.
   */
  observe(prefix: string, observer: CommitObserver): void {
    this.observers.set(prefix, observer);
  }

  private committed(ops: BatchOp[]): void {
    if (this.observers.size === 0) return;
    for (const [prefix, o] of this.observers) {
      try {
        for (let i = 0; i < ops.length; i++) if (ops[i]!.key.startsWith(prefix)) o.op(ops[i]!);
      } catch (err) {
        // The batch is written: its callers must hear so, whatever an observer did.
        this.options.log?.error({ err, event: 'commit-observer-failed', prefix }, 'a commit observer threw');
      }
    }
  }

  /** True when batches go through native-batch.ts, false when through `_batch` (classic-level not as expected). */
  get nativeBatches(): boolean {
    return this.nativeWriters !== undefined;
  }

  /** False while writes fail and the database is being reopened (see the header). */
  get healthy(): boolean {
    return this.broken === undefined;
  }

  private unavailable(): PostinoError {
    return new PostinoError('SPOOL_WRITE_FAILED', 'Cannot store the message now (storage is recovering from a write error), try again later');
  }

  /** One LevelDB batch through the fault seam; a failure breaks the store (see the header). */
  private async write(ops: BatchOp[], sync: boolean): Promise<void> {
    try {
      const fault = this.options.writeFault?.();
      if (fault) throw fault;
      if (this.db.status !== 'open') await this.db.batch(ops, { sync });
      else if (this.nativeWriters) await this.nativeWriters[sync ? 0 : 1].write(ops, sync);
      else await (this.db as unknown as RawBatch)._batch(ops, { sync });
    } catch (e) {
      this.writeFailed(e);
      throw e;
    }
  }

  private writeFailed(e: unknown): void {
    if (this.broken || this.closing) return;
    this.broken = { since: Date.now(), error: e instanceof Error ? e.message : String(e) };
    this.options.log?.error({ err: e, event: 'store-write-failed', dir: this.dir }, 'LevelDB write failed: refusing writes (451) and reopening the database');
    this.recovering = this.recover().finally(() => (this.recovering = undefined));
  }

  /** Closes and reopens the database until a synced probe write succeeds, with REOPEN_BACKOFF_MS between tries. */
  private async recover(): Promise<void> {
    for (let attempt = 0; !this.closing; attempt++) {
      const wait = REOPEN_BACKOFF_MS[Math.min(attempt, REOPEN_BACKOFF_MS.length - 1)];
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        t.unref();
        this.wakeRecovery = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeRecovery = undefined;
      if (this.closing) return;
      try {
        // Let a group commit in flight finish (it fails or succeeds on its own) before closing under it.
        while (this.writing || this.unsyncedWriting) await new Promise((r) => setTimeout(r, 5));
        await this.db.close();
        await this.db.open();
        this.stats.reopens++;
        const fault = this.options.writeFault?.();
        if (fault) throw fault;
        await this.db.batch([{ type: 'put', key: PROBE_KEY, value: Buffer.from(String(Date.now())) }], { sync: true });
        const down = Date.now() - this.broken!.since;
        this.broken = undefined;
        for (const o of this.observers.values()) o.reopened();
        this.options.log?.warn({ event: 'store-recovered', dir: this.dir, attempts: attempt + 1, downMs: down }, 'LevelDB reopened and writable again: writes resume');
        return;
      } catch (e) {
        if (this.db.status === 'closed' && !this.closing) await this.db.open().catch(() => undefined); // reads keep working meanwhile
        this.options.log?.warn({ err: e, event: 'store-still-failing', dir: this.dir, attempts: attempt + 1, nextMs: REOPEN_BACKOFF_MS[Math.min(attempt + 1, REOPEN_BACKOFF_MS.length - 1)] }, 'LevelDB still not writable');
      }
    }
  }

  /** A point read on the calling thread (see the header): for keys read on the per-message path. */
  getNow(key: string): Buffer | undefined {
    return this.db.getSync(key);
  }

  /** `getNow` of each key, in the order asked (what LevelDB's async getMany answers, without its trip). */
  getManyNow(keys: readonly string[]): Array<Buffer | undefined> {
    const out = new Array<Buffer | undefined>(keys.length);
    for (let i = 0; i < keys.length; i++) out[i] = this.db.getSync(keys[i]!);
    return out;
  }

  /** Writes ops atomically; with `sync` the call resolves only after the log is fsynced. */
  commit(ops: BatchOp[], opts: { sync: boolean }): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    if (this.broken) return Promise.reject(this.unavailable());
    if (!opts.sync) {
      return new Promise<void>((resolve, reject) => {
        this.unsynced.push({ ops, resolve, reject });
        if (!this.unsyncedWriting) void this.flushUnsynced();
      });
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ops, resolve, reject });
      if (!this.writing) void this.flush();
    });
  }

  /** Writes queued unsynced commits, one batch per group taken at the end of a turn (see the header). */
  private async flushUnsynced(): Promise<void> {
    this.unsyncedWriting = true;
    while (this.unsynced.length > 0) {
      await nextTurn();
      while (this.ridersLanded) await this.ridersLanded;
      const group = this.unsynced.splice(0);
      if (group.length === 0) continue; // they rode in a synced batch
      if (this.broken) {
        for (const w of group) w.reject(this.unavailable());
        continue;
      }
      this.unsyncedInFlight = true;
      await this.writeGroup(group, false);
      this.unsyncedInFlight = false;
    }
    this.unsyncedWriting = false;
  }

  private async flush(): Promise<void> {
    this.writing = true;
    while (this.pending.length > 0) {
      const synced = this.pending.splice(0);
      if (this.broken) {
        for (const w of synced) w.reject(this.unavailable());
        continue;
      }
      // Unsynced commits waiting for their turn ride along (see the header).
      const riders = this.unsyncedInFlight ? [] : this.takeRiders();
      const group = riders.length > 0 ? [...riders, ...synced] : synced;
      let landed: (() => void) | undefined;
      if (riders.length > 0) this.ridersLanded = new Promise<void>((r) => (landed = r));
      try {
        if (this.blobDirDirty) {
          this.blobDirDirty = false;
          await fsyncPath(this.blobDir);
        }
        if (await this.writeGroup(group, true)) this.stats.riders += riders.length;
      } catch (e) {
        for (const w of group) w.reject(e); // the blob folder's fsync failed: nothing was written
      } finally {
        if (landed) {
          this.ridersLanded = undefined;
          landed();
        }
      }
    }
    this.writing = false;
  }

  /** The commits of `group` as one batch, each settled after it; false when the write failed (each rejected). */
  private async writeGroup(group: Waiter[], sync: boolean): Promise<boolean> {
    const ops = group.length === 1 ? group[0]!.ops : group.flatMap((w) => w.ops);
    try {
      await this.write(ops, sync);
    } catch (e) {
      for (const w of group) w.reject(e);
      return false;
    }
    if (sync) {
      this.stats.syncedBatches++;
      this.stats.syncedOps += ops.length;
    } else {
      this.stats.unsyncedBatches++;
    }
    for (const w of group) {
      this.committed(w.ops);
      w.resolve();
    }
    return true;
  }

  /** The unsynced commits queued now, from the first on, up to RIDERS_MAX_BYTES (see the header). */
  private takeRiders(): Waiter[] {
    let bytes = 0;
    let n = 0;
    for (; n < this.unsynced.length; n++) {
      for (const op of this.unsynced[n]!.ops) bytes += op.key.length + (op.type === 'put' ? op.value.length : 0);
      if (bytes > RIDERS_MAX_BYTES) break;
    }
    return this.unsynced.splice(0, n);
  }

  blobPath(name: string): string {
    return path.join(this.blobDir, name);
  }

  /**
   * A blob file from byte `start` to `end` (exclusive), read in BLOB_READ_BYTES chunks: on this
   * thread when it was written moments ago (recent-blobs.ts), else through the thread pool.
   */
  readBlob(name: string, start = 0, end?: number): Readable {
    // createReadStream's `end` is inclusive.
    return this.recentBlobs.stream(name, start, end) ?? fs.createReadStream(this.blobPath(name), { start, end: end === undefined ? undefined : end - 1, highWaterMark: BLOB_READ_BYTES });
  }

  /** Bytes [start, end) of a blob file in memory: for small ranges (headers, text parts). */
  async readBlobRange(name: string, start: number, end: number): Promise<Buffer> {
    const recent = this.recentBlobs.read(name, start, end);
    if (recent) return recent;
    const fh = await fsp.open(this.blobPath(name), 'r');
    try {
      const buf = Buffer.alloc(Math.max(0, end - start));
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return buf.subarray(0, off);
    } finally {
      await fh.close();
    }
  }

  /** Called after blob file `name` was written and fsynced, before it is referenced. */
  markBlobCreated(name: string): void {
    this.blobDirDirty = true;
    this.recentBlobs.add(name);
  }

  /** Deletes a blob file; one already gone is no error. */
  async removeBlob(name: string): Promise<void> {
    this.recentBlobs.forget(name);
    // unlink, not fs.promises.rm: rm stats the path twice before it unlinks (strace), three trips
    // to the thread pool per removed body instead of one.
    await fsp.unlink(this.blobPath(name)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  /**
   * Compacts the whole database: LevelDB keeps deleted records (tombstones) and
   * the write-ahead log on disk until a compaction, so a drained spool would
   * otherwise keep the space of its peak. Callers run this when a queue empties.
   */
  async compact(): Promise<void> {
    await this.db.compactRange('', '\uffff');
  }

  /**
   * Bytes on disk under this store (LevelDB files and blobs), for status and
   * metrics: walked asynchronously, at most once per `maxAgeMs` (concurrent
   * callers share one walk). `maxAgeMs: 0` measures now (before/after a compaction).
   */
  async diskUsage(maxAgeMs = DISK_USAGE_MAX_AGE_MS): Promise<number> {
    const now = Date.now();
    if (this.usage && now - this.usage.at < maxAgeMs) return this.usage.bytes;
    this.usageWalk ??= walkBytes(this.dir).then(
      (bytes) => {
        this.usage = { bytes, at: Date.now() };
        this.usageWalk = undefined;
        return bytes;
      },
      (e: unknown) => {
        this.usageWalk = undefined;
        throw e;
      },
    );
    return this.usageWalk;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.wakeRecovery?.();
    await this.recovering;
    await this.usageWalk?.catch(() => undefined);
    while (this.writing || this.unsyncedWriting) await new Promise((r) => setTimeout(r, 5));
    await this.db.close();
  }
}

/** Total size of the files under `dir`; entries that vanish during the walk count as 0. */
async function walkBytes(dir: string): Promise<number> {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await walkBytes(p);
    else if (e.isFile()) total += (await fsp.stat(p).catch(() => undefined))?.size ?? 0;
  }
  return total;
}
