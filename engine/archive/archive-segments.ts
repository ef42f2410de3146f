/*
 * archive-segments.ts — the append-only segment files of the message archive
 * (message-archive.ts decides what is kept where; this file writes and reads
 * the bytes).
 *
 * A segment is a file of records, each self-identifying:
 *
 *   "PAR1" | id length (1 byte) | id (ASCII) | body length (u32 BE) | CRC-32 of the body (u32 BE) | body
 *
 * Records wait in the segment's queue while a write is in flight (the first of
 * a batch up to LINGER_MS), and the whole queue goes out as one positional
 * writev (group commit, as common/store.ts does for LevelDB): one thread-pool
 * trip per batch instead of an open, a write and a close per message. Offsets are handed out when a record is queued, so a
 * batch is contiguous and lands where its records' offsets say. Only once the
 * batch's bytes were written is `indexed` called with where each record is (the
 * archive writes its index entries then), so an index entry never precedes its
 * bytes; each append resolves when its entry is written.
 *
 * Unsynced: after a crash of the machine a segment may have lost its tail while
 * the index kept entries for it. A read therefore checks the whole record (the
 * id, the length and the CRC of the body) and answers undefined, never another
 * message's bytes, for a short file, zeros or a record that is not the one
 * asked for. A segment is created with O_EXCL under a name made once per
 * process (never appended to by a later run), so a lost tail is never refilled
 * by other records at offsets an old index entry points to.
 *
 * Side effects: creates, writes and reads files in the folder it is given.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';

const MAGIC = Buffer.from('PAR1', 'latin1');
/** magic, id length, body length, CRC: the header without the id. */
const FIXED_HEADER_BYTES = 4 + 1 + 4 + 4;
/**
 * A segment takes records up to this size, then the next one starts: bounds one
 * file (a copy, a `tail`, a partial restore) while costing one open per 64 MiB
 * (~30,000 messages of 2 KB) instead of one per message.
 */
export const SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
/**
 * A record waits up to this long for others before its batch is written (unless
 * BATCH_BYTES are waiting): messages reach the archive one by one, a few
 * milliseconds apart, so without a wait every batch would be one record and
 * every record a thread-pool trip. The wait is off the mail path (the archive
 * answers the rewrap once it holds the bytes, message-archive.ts).
 */
export const LINGER_MS = 20;
/** Waiting records of this many bytes are written at once, without the linger. */
const BATCH_BYTES = 1024 * 1024;
/** Bodies beyond a u32 length do not fit a record (far beyond any listener.maxMessageBytes). */
const MAX_BODY_BYTES = 0xffff_ffff;
/** Segment names: made by message-archive.ts (run, sequence); nothing else is opened from an index entry. */
export const SEGMENT_NAME = /^[0-9a-z]{1,12}-[0-9a-f]{8}-\d{1,9}\.seg$/;

/** Where one record's body is: what the index keeps. */
export interface Placed {
  id: string;
  segment: string;
  offset: number;
  length: number;
}

function headerOf(id: string, body: Buffer): Buffer {
  const idBytes = Buffer.from(id, 'latin1');
  const h = Buffer.allocUnsafe(FIXED_HEADER_BYTES + idBytes.length);
  MAGIC.copy(h, 0);
  h[4] = idBytes.length;
  idBytes.copy(h, 5);
  h.writeUInt32BE(body.length, 5 + idBytes.length);
  h.writeUInt32BE(crc32(body), 9 + idBytes.length);
  return h;
}

/** The bytes a record of `id` with a body of `length` takes. */
export function recordBytes(id: string, length: number): number {
  return FIXED_HEADER_BYTES + id.length + length;
}

/**
 * The body of record `id` at `offset` of `file`, when the record there is that
 * one, whole (see the header); undefined otherwise, or when the file is gone.
 */
export async function readRecord(file: string, offset: number, id: string, length: number): Promise<Buffer | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const total = recordBytes(id, length);
    const buf = Buffer.allocUnsafe(total);
    let got = 0;
    for (let reads = 0; got < total && reads < 64; reads++) {
      const { bytesRead } = await fh.read(buf, got, total - got, offset + got);
      if (bytesRead === 0) return undefined; // the file ends first: a lost tail
      got += bytesRead;
    }
    if (got < total) return undefined;
    const body = buf.subarray(total - length);
    const expected = headerOf(id, body);
    return buf.subarray(0, expected.length).equals(expected) ? body : undefined;
  } catch {
    return undefined;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function writev(fd: number, bufs: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, bufs, position, (err, n) => (err ? reject(err) : resolve(n))));
}

/** All of `bufs` at `position`: a short write (rare on a regular file) goes on from where it stopped. */
async function writeAll(fd: number, bufs: Buffer[], position: number): Promise<void> {
  let left = bufs.reduce((n, b) => n + b.length, 0);
  for (let tries = 0; left > 0; tries++) {
    const n = await writev(fd, bufs, position);
    if (n <= 0 || tries > 64) throw new Error(`archive segment: short write (${n} bytes)`);
    left -= n;
    position += n;
    let skip = n;
    while (skip > 0 && bufs.length > 0) {
      const first = bufs[0]!;
      if (first.length <= skip) {
        skip -= first.length;
        bufs = bufs.slice(1);
      } else {
        bufs = [first.subarray(skip), ...bufs.slice(1)];
        skip = 0;
      }
    }
  }
}

interface Waiting {
  id: string;
  header: Buffer;
  body: Buffer;
  offset: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** One segment file being appended to by this process (see the header). */
export class Segment {
  private fd: number | undefined;
  private queue: Waiting[] = [];
  /** The flush loop runs (one write in flight at a time); `writing` is its promise. */
  private flushing = false;
  private writing: Promise<void> = Promise.resolve();
  /** The linger (LINGER_MS) of the first record waiting while no write is in flight. */
  private linger: NodeJS.Timeout | undefined;
  private queuedBytes = 0;
  /** Index writes of written batches, awaited by close(). */
  private readonly indexing = new Set<Promise<void>>();
  /** Where the next record goes (bytes handed out, written or queued). */
  private end = 0;
  private failed = false;
  private retired = false;
  private closing: Promise<void> | undefined;
  /** When a record was last given to it (the archive closes idle segments). */
  lastUsed = 0;

  constructor(
    readonly folder: string,
    readonly name: string,
    /** Writes the index entries of a written batch; the appends resolve when it does. */
    private readonly indexed: (placed: Placed[]) => Promise<void>,
  ) {}

  /** Whether a record of `bytes` should go here: an empty segment takes any; a full, failed or retired one none. */
  fits(bytes: number): boolean {
    return !this.failed && !this.retired && (this.end === 0 || this.end + bytes <= SEGMENT_MAX_BYTES);
  }

  append(id: string, body: Buffer): Promise<void> {
    if (body.length > MAX_BODY_BYTES) return Promise.reject(new Error(`archive: a body of ${body.length} bytes does not fit a record`));
    const header = headerOf(id, body);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ id, header, body, offset: this.end, resolve, reject });
      this.end += header.length + body.length;
      this.queuedBytes += header.length + body.length;
      if (this.flushing) return; // joins the next batch, written when the one in flight returns
      if (this.queuedBytes >= BATCH_BYTES || this.retired) this.startFlush();
      else this.linger ??= setTimeout(() => this.startFlush(), LINGER_MS).unref();
    });
  }

  private startFlush(): void {
    clearTimeout(this.linger);
    this.linger = undefined;
    if (!this.flushing && this.queue.length > 0) this.writing = this.flush();
  }

  /** Writes the queue, one batch per write, while records keep arriving (see the header). */
  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      this.queuedBytes = 0;
      try {
        if (this.failed) throw new Error('archive segment failed earlier');
        this.fd ??= await this.open();
        const bufs: Buffer[] = [];
        for (const w of batch) bufs.push(w.header, w.body);
        await writeAll(this.fd, bufs, batch[0]!.offset);
      } catch (e) {
        // The records after a failed write have offsets past bytes that may be missing: this
        // segment takes nothing more (fits() says no; the archive starts another).
        this.failed = true;
        for (const w of batch) w.reject(e);
        continue;
      }
      const placed = batch.map((w) => ({ id: w.id, segment: this.name, offset: w.offset, length: w.body.length }));
      const done = this.indexed(placed).then(
        () => {
          for (const w of batch) w.resolve();
        },
        (e: unknown) => {
          for (const w of batch) w.reject(e);
        },
      );
      this.indexing.add(done);
      void done.finally(() => this.indexing.delete(done));
    }
    this.flushing = false;
  }

  private async open(): Promise<number> {
    await fsp.mkdir(this.folder, { recursive: true });
    // 'wx': O_CREAT | O_EXCL, never a file another run wrote; positional writes (no O_APPEND, which ignores the position).
    return new Promise((resolve, reject) => fs.open(path.join(this.folder, this.name), 'wx', 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
  }

  /** Takes no more records; resolves once the queued ones are written and indexed and the file is closed. */
  close(): Promise<void> {
    this.retired = true;
    this.startFlush(); // no linger: the waiting records go now
    this.closing ??= (async () => {
      while (this.flushing) await this.writing;
      while (this.indexing.size > 0) await Promise.allSettled([...this.indexing]);
      const fd = this.fd;
      this.fd = undefined;
      if (fd !== undefined) await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
    })();
    return this.closing;
  }
}
