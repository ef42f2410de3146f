/*
 * fsync.ts — write a file and make it durable before anyone is told it exists.
 *
 * Side effects: creates/overwrites files, fsyncs files and folders.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';

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
 * Streams `source` into `file` (mode 0600) and fsyncs it. Past `limit` bytes the
 * rest of the source is read and dropped (an SMTP client must reach its final
 * dot to get a 552), the file removed, and TooLargeError thrown; on any error
 * nothing is left behind.
 */
export async function writeFileSynced(file: string, source: Iterable<Buffer> | AsyncIterable<Buffer> | Readable, limit = Infinity): Promise<number> {
  const fh = await fsp.open(file, 'w', 0o600);
  let size = 0;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size <= limit) await fh.write(chunk);
    }
    if (size > limit) throw new TooLargeError(limit);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await fsp.rm(file, { force: true });
    throw e;
  }
  await fh.close();
  return size;
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
