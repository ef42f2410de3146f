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
 * Write buffer: 32 MiB instead of LevelDB's 4 MiB. Queue entries are short-lived
 * (a message is usually relayed and deleted within seconds), so a larger memtable
 * means fewer flushes of data that is already dead and less compaction work;
 * measured with `npm run bench -- forwarder`, 100 KB messages went from 0.74 to
 * 0.91 of Postfix's rate. The cost is up to 2 × 32 MiB of memory per process.
 *
 * Side effects: creates and locks the database folder; fsyncs.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { fsyncPath } from './fsync.js';

/**
 * diskUsage() is read by every /status and /metrics scrape; walking a spool of
 * many blob files each time cost a scrape its latency and the event loop its
 * time. Within this age the last result is returned (a gauge, not a ledger).
 */
const DISK_USAGE_MAX_AGE_MS = 5_000;

/** See the header: short-lived entries, fewer memtable flushes. */
const WRITE_BUFFER_BYTES = 32 * 1024 * 1024;

export type BatchOp =
  | { type: 'put'; key: string; value: Buffer }
  | { type: 'del'; key: string };

interface Waiter {
  ops: BatchOp[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export interface StoreStats {
  syncedBatches: number;
  syncedOps: number;
}

export class Store {
  readonly db: ClassicLevel<string, Buffer>;
  readonly blobDir: string;
  private pending: Waiter[] = [];
  private writing = false;
  private blobDirDirty = false;
  readonly stats: StoreStats = { syncedBatches: 0, syncedOps: 0 };
  private usage: { bytes: number; at: number } | undefined;
  private usageWalk: Promise<number> | undefined;

  private constructor(readonly dir: string) {
    this.db = new ClassicLevel<string, Buffer>(path.join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'buffer', writeBufferSize: WRITE_BUFFER_BYTES });
    this.blobDir = path.join(dir, 'blobs');
  }

  static async open(dir: string): Promise<Store> {
    fs.mkdirSync(path.join(dir, 'blobs'), { recursive: true, mode: 0o700 });
    const s = new Store(dir);
    await s.db.open();
    return s;
  }

  /** Writes ops atomically; with `sync` the call resolves only after the log is fsynced. */
  commit(ops: BatchOp[], opts: { sync: boolean }): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    if (!opts.sync) return this.db.batch(ops);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ops, resolve, reject });
      if (!this.writing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.writing = true;
    while (this.pending.length > 0) {
      const group = this.pending.splice(0);
      const ops = group.length === 1 ? group[0]!.ops : group.flatMap((w) => w.ops);
      try {
        if (this.blobDirDirty) {
          this.blobDirDirty = false;
          await fsyncPath(this.blobDir);
        }
        await this.db.batch(ops, { sync: true });
        this.stats.syncedBatches++;
        this.stats.syncedOps += ops.length;
        for (const w of group) w.resolve();
      } catch (e) {
        for (const w of group) w.reject(e);
      }
    }
    this.writing = false;
  }

  blobPath(name: string): string {
    return path.join(this.blobDir, name);
  }

  /** Called after a blob file was written and fsynced, before it is referenced. */
  markBlobCreated(): void {
    this.blobDirDirty = true;
  }

  async removeBlob(name: string): Promise<void> {
    await fsp.rm(this.blobPath(name), { force: true });
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
    await this.usageWalk?.catch(() => undefined);
    while (this.writing) await new Promise((r) => setTimeout(r, 5));
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
