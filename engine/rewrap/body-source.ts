/*
 * body-source.ts — random access to one intake message's bytes, whether the
 * queue holds them inline (a Buffer) or in a blob file. The rewrap reads the
 * MIME structure once, then every copy streams the untouched byte ranges from
 * here, so a 20 MB attachment is never held in memory, once or per recipient.
 * Side effects: reads the blob file.
 */
import { Readable } from 'node:stream';
import type { Store } from '../../common/store.js';

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

/** A blob file of the store, read as Store.readBlob and readBlobRange read (on the calling thread while it is recent). */
export function fileSource(store: Store, name: string, size: number): BodySource {
  return {
    size,
    stream: (start, end) => (end > start ? store.readBlob(name, start, end) : Readable.from([])),
    read: (start, end) => store.readBlobRange(name, start, end),
  };
}
