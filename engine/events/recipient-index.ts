/*
 * recipient-index.ts — the event log's index by recipient, so the feed filter
 * `recipient=<address>` (http-routes.ts) and the dashboard's search by a full
 * address (dashboard/messages.ts) read that recipient's events, not the log.
 *
 * Keys `mr!<account>!<digest>!<seq16>`, empty values; the digest is the first
 * DIGEST_HEX hex digits of SHA-256 of the lower-cased address, so no address
 * is written outside the event itself (the recipient eraser rewrites `e!`
 * values only, and deletes these keys for the events it rewrites). A digest
 * collision costs one extra event read: readers still compare the address.
 *
 * Same guarantees as the message-history index: written by EventLog.prepare
 * (an indexer) in the same batch as the events, deleted by retention with
 * each event (`recipientIndexKeys`), re-keyed by the eraser under the
 * pseudonym in the batch that rewrites the event.
 *
 * Events written before the index existed are indexed once by `backfill()`
 * at start, BACKFILL_BATCH events per LevelDB batch with its cursor
 * (`mr-backfill!cursor`) in the same batch, so a restart resumes it. Until
 * the backfill is done, `recipientIndexOf()` answers undefined and readers
 * scan the log as before; retention waits for it (events-stage.ts) so it
 * never writes an entry for an event pruned meanwhile.
 * Side effects: LevelDB reads and writes.
 */
import { createHash } from 'node:crypto';
import { setImmediate as turn } from 'node:timers/promises';
import type { PostinoEvent } from '../../common/events.js';
import type { BatchOp, Store } from '../../common/store.js';
import { seqKey, type EventLog } from './event-log.js';

export const RECIPIENT_INDEX_PREFIX = 'mr!';
/** Sorts right after every `mr!` key (and before `mr-backfill!`). */
const PREFIX_END = 'mr"';
/** 64 bits: collisions are vanishingly rare, and harmless (readers compare the address). */
const DIGEST_HEX = 16;
const SEQ_WIDTH = 16;
const CURSOR_KEY = 'mr-backfill!cursor';
/** Events indexed per LevelDB batch by the backfill. */
const BACKFILL_BATCH = 1_000;
/** Events fetched per LevelDB getMany by readers. */
const READ_BATCH = 128;

const pad = (seq: number): string => seq.toString().padStart(SEQ_WIDTH, '0');

export function recipientDigest(address: string): string {
  return createHash('sha256').update(address.toLowerCase()).digest('hex').slice(0, DIGEST_HEX);
}

function prefixOf(account: string, address: string): string {
  return `${RECIPIENT_INDEX_PREFIX}${account}!${recipientDigest(address)}!`;
}

export function recipientIndexKey(account: string, address: string, seq: number): string {
  return prefixOf(account, address) + pad(seq);
}

/** The recipient index key of one event (what prepare writes, retention and the eraser delete). */
export function recipientIndexKeys(e: PostinoEvent): string[] {
  return e.recipient ? [recipientIndexKey(e.account, e.recipient, e.seq)] : [];
}

function putOps(events: PostinoEvent[]): BatchOp[] {
  const empty = Buffer.alloc(0);
  return events.flatMap((e) => recipientIndexKeys(e).map((key): BatchOp => ({ type: 'put', key, value: empty })));
}

interface BackfillCursor {
  /** Events up to this seq predate the index (later ones the indexer wrote). */
  upTo: number;
  /** Events up to this seq are indexed. */
  after: number;
}

/** Seq range of a read: (after, before), oldest first or (`reverse`) newest first. */
export interface SeqRange {
  after: number;
  before: number;
  reverse: boolean;
}

const ready = new WeakMap<EventLog, RecipientIndex>();

/** The index of this log once it is complete (backfilled); undefined: scan the log instead. */
export function recipientIndexOf(events: EventLog): RecipientIndex | undefined {
  return ready.get(events);
}

export class RecipientIndex {
  /** The highest seq the indexer did not see (prepared before it was registered). */
  private readonly unindexedTop: number;
  private backfilling: Promise<number> | undefined;
  private stopping = false;

  /** Registers the indexer: call right after EventLog.open, before any writer prepares an event. */
  constructor(
    private readonly store: Store,
    private readonly events: EventLog,
  ) {
    this.unindexedTop = events.nextSequence - 1;
    events.addIndexer(putOps);
  }

  /** Indexes the events that predate the index (once; resumable); resolves to how many were read. */
  backfill(): Promise<number> {
    this.backfilling ??= this.runBackfill();
    return this.backfilling;
  }

  /** Stops the backfill between two batches (node shutdown); the next start resumes it from its cursor. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.backfilling?.catch(() => undefined);
  }

  private async runBackfill(): Promise<number> {
    const db = this.store.db;
    const saved = await db.get(CURSOR_KEY);
    let cur: BackfillCursor = saved ? (JSON.parse(saved.toString('utf8')) as BackfillCursor) : { upTo: this.unindexedTop, after: 0 };
    let read = 0;
    if (!saved) await this.store.commit([{ type: 'put', key: CURSOR_KEY, value: Buffer.from(JSON.stringify(cur)) }], { sync: false });
    while (cur.after < cur.upTo) {
      if (this.stopping) return read;
      const batch: PostinoEvent[] = [];
      for await (const v of db.values({ gt: seqKey(cur.after), lte: seqKey(cur.upTo), limit: BACKFILL_BATCH })) batch.push(JSON.parse(v.toString('utf8')) as PostinoEvent);
      cur = { ...cur, after: batch.length < BACKFILL_BATCH ? cur.upTo : batch[batch.length - 1]!.seq };
      await this.store.commit([...putOps(batch), { type: 'put', key: CURSOR_KEY, value: Buffer.from(JSON.stringify(cur)) }], { sync: false });
      read += batch.length;
      await turn(); // let mail and HTTP in between batches
    }
    ready.set(this.events, this);
    return read;
  }

  /** Accounts with index entries: one seek per account (skip-scan), never a walk over the entries. */
  private async accounts(): Promise<string[]> {
    const out: string[] = [];
    let from = RECIPIENT_INDEX_PREFIX;
    for (;;) {
      let key: string | undefined;
      for await (const k of this.store.db.keys({ gt: from, lt: PREFIX_END, limit: 1 })) key = k;
      if (key === undefined) return out;
      const account = key.slice(RECIPIENT_INDEX_PREFIX.length, key.indexOf('!', RECIPIENT_INDEX_PREFIX.length));
      out.push(account);
      from = `${RECIPIENT_INDEX_PREFIX}${account}"`; // '"' sorts right after '!': past this account's keys
    }
  }

  /** Seqs of this recipient's events in the range, of one account or (undefined) of all, merged by seq. */
  async *seqs(account: string | undefined, address: string, r: SeqRange): AsyncGenerator<number> {
    const accounts = account === undefined ? await this.accounts() : [account];
    const its = accounts.map((a) => {
      const p = prefixOf(a, address);
      return { p, it: this.store.db.keys({ gt: p + pad(r.after), lt: p + pad(r.before), reverse: r.reverse }) };
    });
    try {
      const heads = await Promise.all(its.map(async ({ p, it }) => {
        const k = await it.next();
        return k === undefined ? undefined : Number(k.slice(p.length));
      }));
      for (;;) {
        let best = -1;
        for (let i = 0; i < heads.length; i++) {
          const h = heads[i];
          if (h !== undefined && (best === -1 || (r.reverse ? h > heads[best]! : h < heads[best]!))) best = i;
        }
        if (best === -1) return;
        yield heads[best]!;
        const k = await its[best]!.it.next();
        heads[best] = k === undefined ? undefined : Number(k.slice(its[best]!.p.length));
      }
    } finally {
      await Promise.all(its.map(({ it }) => it.close()));
    }
  }

  /**
   * This recipient's events in the range, in seq order (see `seqs`), fetched a
   * few at a time: memory holds READ_BATCH events, whatever the recipient's count.
   * Events pruned or erased since their entry was read are left out.
   */
  async *read(account: string | undefined, address: string, r: SeqRange): AsyncGenerator<PostinoEvent> {
    const folded = address.toLowerCase();
    let keys: string[] = [];
    const flush = async function* (db: Store['db']): AsyncGenerator<PostinoEvent> {
      const values = await db.getMany(keys);
      keys = [];
      for (const v of values) {
        if (v === undefined) continue;
        const e = JSON.parse(v.toString('utf8')) as PostinoEvent;
        if (e.recipient?.toLowerCase() === folded) yield e;
      }
    };
    for await (const seq of this.seqs(account, address, r)) {
      keys.push(seqKey(seq));
      if (keys.length >= READ_BATCH) yield* flush(this.store.db);
    }
    if (keys.length) yield* flush(this.store.db);
  }
}
