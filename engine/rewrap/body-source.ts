/*
 * body-source.ts — random access to one intake message's bytes, whether the
 * queue holds them inline (a Buffer) or in a blob file. The rewrap reads the
 * MIME structure once, then every copy streams the untouched byte ranges from
 * here, so a 20 MB attachment is never held in memory, once or per recipient.
 * Side effects: reads the blob file.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';

export interface BodySource {
  readonly size: number;
  /** Bytes [start, end) as a stream. */
  stream(start: number, end: number): Readable;
  /** Bytes [start, end) in memory: only for small ranges (headers, text parts). */
  read(start: number, end: number): Promise<Buffer>;
}

export function bufferSource(buf: Buffer): BodySource {
  return {
    size: buf.length,
    stream: (start, end) => Readable.from([buf.subarray(start, end)]),
    read: async (start, end) => buf.subarray(start, end),
  };
}

/**
 * Chunk size of reads from a blob file. 64 KiB, Node's default for file streams:
 * with 256 KiB chunks the hosted process's peak RSS after 100 messages of 10 MB
 * was ~20 MiB higher (bench big-messages, issue #17) though no more was live,
 * most likely because chunks over glibc's 128 KiB mmap threshold raise it when freed and
 * the mixed sizes then sharing the heap fragment it. Per chunk the
 * rewrap's cost is a few microseconds, nothing beside 64 KiB of I/O.
 */
const READ_CHUNK_BYTES = 64 * 1024;

export function fileSource(file: string, size: number): BodySource {
  return {
    size,
    // createReadStream's `end` is inclusive.
    stream: (start, end) => (end > start ? fs.createReadStream(file, { start, end: end - 1, highWaterMark: READ_CHUNK_BYTES }) : Readable.from([])),
    read: async (start, end) => {
      const fh = await fsp.open(file, 'r');
      try {
        const buf = Buffer.alloc(end - start);
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
    },
  };
}
