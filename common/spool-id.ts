/*
 * spool-id.ts — effectively-once delivery across the forwarder → listener hop.
 *
 * A relay can time out after the final dot while the next hop did take the
 * message (RFC 5321 6.1 accepts this window as a duplicate risk). To close it,
 * the forwarder prepends `X-Postino-Spool-Id: <spool queue id>` to every
 * message it relays (`stampSpoolId`), and the listener:
 *   - strips every such header from the header section while it stores the
 *     message (`SpoolIdFilter`), so it never reaches a recipient;
 *   - remembers each accepted id for `listener.spoolIdTtlSeconds` (default 7
 *     days, longer than the forwarder's 5-day retry limit) in its LevelDB, in
 *     the same synced batch as the enqueue (`SeenSpoolIds`);
 *   - answers a retry carrying an id it already holds with `250` and does not
 *     enqueue it again. A second transaction with the same id while the first
 *     is still being written gets `451` (the forwarder retries and then finds it).
 *
 * The id is chosen by whoever connects, so it is trusted only as far as it can
 * hurt its own sender: ids are remembered per scope (the listener's account,
 * decided by the session's network and login), so one customer's id can never
 * make another's message `already queued`; and only an id of the forwarder's
 * shape (`isSpoolId`: a queue id of durable-queue.ts `newQueueId`) is looked
 * up at all — anything else is stripped and the message is a new one.
 *
 * Keys in the hosted store: sid!<scope>!<id> → {queueId, expires};
 * sidx!<expires>!<scope>!<id> (expiry index, swept by `sweep()`). Account ids
 * hold no `!` (config.ts), and the id's shape is fixed, so keys cannot collide.
 * Side effects: LevelDB reads and writes (sweep).
 */
import { Readable } from 'node:stream';
import { setImmediate as yieldNow } from 'node:timers/promises';
import type { BatchOp, Store } from './store.js';
import { bodyPieces } from './smtp-session.js';
import type { DataStage } from './stream-batches.js';

export const SPOOL_ID_HEADER = 'X-Postino-Spool-Id';
const HEADER_LC = SPOOL_ID_HEADER.toLowerCase();
/** Headers past this many bytes are not scanned: ours is the first line, and a bigger header section is pathological. */
const MAX_HEADER_SCAN_BYTES = 256 * 1024;
const EXPIRY_WIDTH = 15;
/** Ids deleted per LevelDB batch by the sweep: small enough not to hold up intake writes. */
const SWEEP_BATCH = 5_000;
/** The shape of durable-queue.ts `newQueueId`: 9 + 3 base-36 digits (time, counter), 8 hex digits (random). */
const SPOOL_ID_FORMAT = /^[0-9A-Z]{12}[0-9A-F]{8}$/;

/** Whether a header value is a spool id the forwarder could have minted (anything else is ignored). */
export function isSpoolId(value: string): boolean {
  return SPOOL_ID_FORMAT.test(value);
}

/**
 * The body as relayed by the forwarder: our header first, then the message as spooled. A body in
 * memory stays in memory, as pieces (smtp-session.ts BodySource): not copied behind the line.
 */
export function stampSpoolId(id: string, body: Buffer | readonly Buffer[]): Buffer[];
export function stampSpoolId(id: string, body: Readable): Readable;
export function stampSpoolId(id: string, body: Buffer | readonly Buffer[] | Readable): Buffer[] | Readable;
export function stampSpoolId(id: string, body: Buffer | readonly Buffer[] | Readable): Buffer[] | Readable {
  const line = Buffer.from(`${SPOOL_ID_HEADER}: ${id}\r\n`);
  const pieces = bodyPieces(body);
  if (pieces) return [line, ...pieces];
  return Readable.from(
    (async function* () {
      yield line;
      yield* body as AsyncIterable<Buffer>;
    })(),
    // Bytes, not objects: an object-mode Readable reads 16 chunks (1 MB of a blob) ahead of the TLS socket.
    { objectMode: false },
  );
}

/**
 * The pieces as one Buffer: a view of their memory when they lie back to back in it (the
 * lines kept around a dropped field, or all of a chunk), a copy only when they do not. Why:
 * the chunk that ends the header section is most of a 64 KiB read, copied per message for
 * nothing when the forwarder's line, the first, is all that went (issue #17).
 */
function joined(pieces: Buffer[]): Buffer {
  if (pieces.length === 0) return Buffer.alloc(0);
  const first = pieces[0]!;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < pieces.length; i++) {
    const p = pieces[i]!;
    if (p.buffer !== first.buffer || p.byteOffset !== end) return Buffer.concat(pieces);
    end += p.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/**
 * Removes every X-Postino-Spool-Id field (with folded continuation lines) from
 * the header section and records the first one's value. The body passes as is.
 */
export class SpoolIdFilter implements DataStage {
  spoolId: string | undefined;
  private inHeaders = true;
  private dropping = false;
  private pending: Buffer = Buffer.alloc(0);
  private scanned = 0;

  push(chunk: Buffer): Buffer {
    if (!this.inHeaders) return chunk;
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const out: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl === -1) break;
      const line = buf.subarray(start, nl + 1);
      start = nl + 1;
      this.scanned += line.length;
      if (line.length <= 2 && (line[0] === 13 || line[0] === 10)) {
        // The empty line: end of the header section.
        this.inHeaders = false;
        out.push(line, buf.subarray(start));
        start = buf.length;
        break;
      }
      if (line[0] === 32 || line[0] === 9) {
        if (!this.dropping) out.push(line);
        continue;
      }
      const colon = line.indexOf(58);
      const name = colon > 0 ? line.subarray(0, colon).toString('latin1').trim().toLowerCase() : '';
      this.dropping = name === HEADER_LC;
      if (this.dropping) {
        this.spoolId ??= line.subarray(colon + 1).toString('latin1').trim() || undefined;
      } else {
        out.push(line);
      }
    }
    buf = buf.subarray(start);
    if (this.inHeaders && this.scanned + buf.length > MAX_HEADER_SCAN_BYTES) {
      this.inHeaders = false;
      out.push(buf);
      buf = Buffer.alloc(0);
    }
    this.pending = buf;
    return joined(out);
  }

  end(): Buffer | undefined {
    return this.pending.length ? this.pending : undefined;
  }
}

function padExpiry(t: number): string {
  return Math.floor(t).toString().padStart(EXPIRY_WIDTH, '0');
}

/** The listener's memory of spool ids it has accepted, per scope (account). */
export class SeenSpoolIds {
  private readonly writing = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The queue id the message was accepted under, if this scope saw this spool id and it has not expired. */
  async lookup(scope: string, spoolId: string): Promise<string | undefined> {
    const v = this.store.getNow(`sid!${scoped(scope, spoolId)}`); // per message, mostly absent: on this thread (store.ts)
    if (!v) return undefined;
    const rec = JSON.parse(v.toString('utf8')) as { queueId: string; expires: number };
    return rec.expires > this.now() ? rec.queueId : undefined;
  }

  /** Claims the id for one transaction; false when another one of the same scope is writing it now. */
  begin(scope: string, spoolId: string): boolean {
    const k = scoped(scope, spoolId);
    if (this.writing.has(k)) return false;
    this.writing.add(k);
    return true;
  }

  end(scope: string, spoolId: string): void {
    this.writing.delete(scoped(scope, spoolId));
  }

  /** Ops to commit in the enqueue's batch. */
  rememberOps(scope: string, spoolId: string, queueId: string): BatchOp[] {
    const expires = this.now() + this.ttlMs;
    const k = scoped(scope, spoolId);
    return [
      { type: 'put', key: `sid!${k}`, value: Buffer.from(JSON.stringify({ queueId, expires })) },
      { type: 'put', key: `sidx!${padExpiry(expires)}!${k}`, value: Buffer.alloc(0) },
    ];
  }

  /**
   * Forgets every expired id; returns how many. Works in batches of `batch` ids
   * (one LevelDB batch each, yielding to the event loop between them), and
   * goes on until none is left: a sweep that stopped at a fixed count per run
   * (it once did, 10,000 an hour) falls behind any rate above that count per
   * interval (2.8 msg/s) and the keys pile up for ever.
   */
  async sweep(batch = SWEEP_BATCH): Promise<number> {
    const cutoff = `sidx!${padExpiry(this.now())}`;
    let total = 0;
    for (;;) {
      const ops: BatchOp[] = [];
      for await (const key of this.store.db.keys({ gte: 'sidx!', lt: cutoff, limit: batch })) {
        const k = key.slice(5 + EXPIRY_WIDTH + 1);
        ops.push({ type: 'del', key }, { type: 'del', key: `sid!${k}` });
      }
      if (ops.length) await this.store.commit(ops, { sync: false });
      total += ops.length / 2;
      if (ops.length / 2 < batch) return total;
      await yieldNow();
    }
  }
}

function scoped(scope: string, spoolId: string): string {
  return `${scope}!${spoolId}`;
}
