/*
 * recent-blobs.ts — blob files this process wrote moments ago, read back on the
 * calling thread instead of through libuv's thread pool.
 *
 * Why: a body above the inline limit is written to its blob file, fsynced, and
 * read back at once, whole: the forwarder relays it within milliseconds; the
 * hosted node scans its MIME structure and delivers it (the delivery copy reads
 * the intake's file, handed over). Read through fs.ReadStream, a 1 MB file is an
 * open, four 256 KiB reads and a close, each a trip to the thread pool (a
 * futex wake-up and two context switches, which a VM makes dear) while the
 * bytes are in the page cache, where the write just put them. Read here, the
 * open, each read and the close are plain system calls on the calling thread,
 * one 256 KiB read per `read()` of the stream, so at most one chunk is in memory
 * per reader as before. Measured on the forwarder alone (1 MB × 1,000 over
 * 20 connections into smtp-sink, five interleaved pairs, CPU of all its threads
 * from /proc): 5.2–7.1 ms per message against 6.2–7.5, the median 6.0 against
 * 6.6; the hosted node's CPU per 1,000 at 1 MB in `bench -- pipeline` fell too
 * (docs/performance-log.md, issue #17, twelfth round).
 *
 * What was tried first and dropped: keeping the written chunks in memory and
 * serving reads from them. Held past a scavenge or two, V8 promotes their
 * buffers to the old generation, and only a full mark-compact frees promoted
 * memory: the forwarder ran 23 mark-compacts per 700 such messages instead of 0,
 * and its CPU per message rose 17%.
 *
 * The price is the same as store.ts's getNow: a read that misses the page cache
 * blocks the event loop for a disk read. So only files written within RECENT_MS
 * are read this way (a body spooled through an outage, read hours later, goes
 * through the thread pool as before); the page cache keeps what was written
 * seconds ago unless the machine is out of memory.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';

/** How long after its write a blob file counts as recent (see the header). */
export const RECENT_MS = 30_000;
/** Names remembered at most (the oldest go first): a bound on memory, far above what 30 s of large bodies make. */
const MAX_NAMES = 10_000;

export class RecentBlobs {
  /** Name → when written; insertion order is age order. */
  private readonly written = new Map<string, number>();

  constructor(
    private readonly pathOf: (name: string) => string,
    /** Bytes per read (store.ts BLOB_READ_BYTES). */
    private readonly chunkBytes: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The file was written and fsynced just now. */
  add(name: string): void {
    const now = this.now();
    this.written.delete(name);
    this.written.set(name, now);
    for (const [n, at] of this.written) {
      if (this.written.size <= MAX_NAMES && now - at <= RECENT_MS) break;
      this.written.delete(n);
    }
  }

  forget(name: string): void {
    this.written.delete(name);
  }

  has(name: string): boolean {
    const at = this.written.get(name);
    return at !== undefined && this.now() - at <= RECENT_MS;
  }

  /** Bytes [start, end) of a recent file as a stream read on the calling thread; undefined when not recent. */
  stream(name: string, start = 0, end = Infinity): Readable | undefined {
    if (!this.has(name)) return undefined;
    const file = this.pathOf(name);
    const chunkBytes = this.chunkBytes;
    let fd: number | undefined;
    let at = start;
    return new Readable({
      // Nothing read ahead: one chunk per read() of the consumer, as it takes them.
      highWaterMark: 0,
      read() {
        try {
          fd ??= fs.openSync(file, 'r');
          const n = Math.min(chunkBytes, end - at);
          if (n <= 0) return void this.push(null);
          const buf = Buffer.allocUnsafeSlow(n);
          const got = fs.readSync(fd, buf, 0, n, at);
          if (got === 0) return void this.push(null);
          at += got;
          this.push(got === n ? buf : buf.subarray(0, got));
        } catch (err) {
          this.destroy(err as Error);
        }
      },
      destroy(err, callback) {
        try {
          if (fd !== undefined) fs.closeSync(fd);
        } finally {
          callback(err);
        }
      },
    });
  }

  /** Bytes [start, end) of a recent file in memory; undefined when not recent. */
  read(name: string, start: number, end: number): Buffer | undefined {
    if (!this.has(name)) return undefined;
    const fd = fs.openSync(this.pathOf(name), 'r');
    try {
      const buf = Buffer.alloc(Math.max(0, end - start));
      let off = 0;
      while (off < buf.length) {
        const got = fs.readSync(fd, buf, off, buf.length - off, start + off);
        if (got === 0) break;
        off += got;
      }
      return buf.subarray(0, off);
    } finally {
      fs.closeSync(fd);
    }
  }
}
