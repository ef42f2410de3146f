/*
 * fsync.ts — write a file and make it durable before anyone is told it exists.
 *
 * Side effects: creates/overwrites files, fsyncs files and folders.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { chunkBatches } from './stream-batches.js';

/**
 * Writes a small file (mode 0600) and fsyncs it, synchronously: for start-up
 * and CLI code. `exclusive` fails with EEXIST when the file exists ('wx').
 */
export function writeSmallFileSynced(file: string, data: string | Buffer, o: { exclusive?: boolean } = {}): void {
  const fd = fs.openSync(file, o.exclusive ? 'wx' : 'w', 0o600);
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export class TooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`body exceeds ${limit} bytes`);
  }
}

/**
 * Bytes a file write gathers before it goes to the thread pool (writev of the chunks as
 * they came). Why: a body that arrives over TLS comes in 16 KiB records, and one write per
 * record cost the hosted node 2.0 ms of CPU per MiB (a thread-pool round trip each: futex
 * wake, two context switches; and each write into a new page-cache folio zeroes the rest of
 * it first), against 0.8 ms in 256 KiB writes and 0.7 ms in 512 KiB ones (1 MiB files,
 * written and fsynced 300 times, this VM; issue #17). 256 KiB is also what a body may hold
 * in memory before it spills to its file (durable-queue.ts inlineMaxBytes).
 */
export const WRITE_GATHER_BYTES = 256 * 1024;

/**
 * Memory a writer may hold beyond the chunk in hand, shared with others (durable-queue.ts
 * keeps one per queue): `take` says whether n more bytes may be held, `give` hands them
 * back. Without one, a writer gathers freely.
 */
export interface HoldBudget {
  take(n: number): boolean;
  give(n: number): void;
}

/**
 * Streams `source` into `file` (mode 0600) and fsyncs it. Past `limit` bytes the
 * rest of the source is read and dropped (an SMTP client must reach its final
 * dot to get a 552), the file removed, and TooLargeError thrown; on any error
 * nothing is left behind. Chunks are gathered up to WRITE_GATHER_BYTES per write, as far
 * as `budget` lets them be held; a chunk it refuses goes to disk with those gathered.
 * The source may hand over chunks in batches (arrays, as stream-batches.ts does); a
 * Readable is read that way, without the copy its own iterator makes of what is buffered.
 */
export async function writeFileSynced(file: string, source: Iterable<Buffer> | AsyncIterable<Buffer | readonly Buffer[]> | Readable, limit = Infinity, budget?: HoldBudget): Promise<number> {
  const fd = await openAsync(file, 'w', 0o600);
  let size = 0;
  let gathered: Buffer[] = [];
  let held = 0;
  /** Gives back what the gathered chunks held of the budget. */
  const letGo = (): void => {
    budget?.give(held);
    held = 0;
  };
  const flush = async (): Promise<void> => {
    const bufs = gathered;
    gathered = [];
    try {
      if (bufs.length > 0) await writevAsync(fd, bufs);
    } finally {
      letGo();
    }
  };
  try {
    try {
      const items: Iterable<Buffer> | AsyncIterable<Buffer | readonly Buffer[]> = source instanceof Readable ? chunkBatches(source) : source;
      for await (const item of items) {
        for (const chunk of Buffer.isBuffer(item) ? [item] : item) {
          size += chunk.length;
          if (size > limit) {
            gathered = [];
            letGo();
            continue;
          }
          gathered.push(chunk);
          const room = held + chunk.length < WRITE_GATHER_BYTES && (budget?.take(chunk.length) ?? true);
          if (room) held += chunk.length;
          else await flush();
        }
      }
      if (size > limit) throw new TooLargeError(limit);
      await flush();
    } finally {
      letGo();
    }
    await fsyncAsync(fd);
  } catch (e) {
    fs.closeSync(fd);
    await fsp.rm(file, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  return size;
}

/*
 * The descriptor API with the close on the calling thread. Why: a FileHandle closes only
 * through the thread pool, a round trip (futex wake, two context switches) for a system call
 * that takes microseconds here: the data are fsynced already, so close has nothing to flush.
 * Writing and fsyncing 1 MiB files from 64 KiB chunks, the machine spent 0.88-1.13 ms of CPU
 * per file with the close on the calling thread against 1.00-1.17 ms through the pool (400
 * files, four alternating runs, /proc/stat, 2026-12-03; issue #17).
 * A FileHandle's descriptor must not be closed behind its back (it would close the number again
 * when collected), so the whole write goes through the descriptor API.
 */
const openAsync = promisify(fs.open);
const fsyncAsync = promisify(fs.fsync);
/** fs.writev looked up at each call (test/common/fsync.test.ts counts the writes there). */
function writevAsync(fd: number, bufs: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => fs.writev(fd, bufs, (err) => (err ? reject(err) : resolve())));
}

/** fsyncs a file or folder (a folder after creating or renaming entries in it). */
export async function fsyncPath(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncPath for start-up and CLI code, synchronously. */
export function fsyncPathSync(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Group fsync of one folder: callers that arrive while an fsync is running share
 * the next one, so N files renamed at once cost two folder fsyncs, not N.
 */
export class FolderSync {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.running) {
      this.running = fsyncPath(this.dir).finally(() => (this.running = undefined));
      return this.running;
    }
    // An fsync already started may have missed our rename: wait for a fresh one.
    this.next ??= this.running.then(() => {
      this.next = undefined;
      return this.sync();
    });
    return this.next;
  }
}
