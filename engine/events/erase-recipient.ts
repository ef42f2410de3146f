/*
 * erase-recipient.ts — takes a deleted recipient's address out of the stored
 * events: every event of that account whose recipient is the address gets the
 * address replaced, wherever it appears in the event (recipient, an SMTP
 * response or reason quoting it…), by the recipient's pseudonym
 * (recipients/pseudonym.ts). Order, seq, id, type and times stay, so feed
 * readers, statistics and webhooks see the same history without the person.
 *
 * Works through the log in small batches (BATCH events, then a turn of the
 * event loop) up to the `recipient.deleted` event, so a long log never holds
 * the node; the job's progress (`after`) is written in the same LevelDB batch
 * as the events it rewrote, so a crash resumes where it was and rewrites
 * nothing twice wrongly (a rewritten event no longer matches).
 * Each rewritten event's recipient-index entry (recipient-index.ts) moves from
 * the address's digest to the pseudonym's in the same batch, so the index
 * keeps no trace of the address and still finds what a scan finds.
 * Reads through EventLog.read (never past the watermark, so an event committed
 * late below the deletion is still found) and writes the `e!<seq>` keys
 * directly: the log has no rewrite API, and events are otherwise immutable.
 * Side effects: LevelDB reads and writes.
 */
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { caseFoldedEmail } from '../../common/address.js';
import type { PostinoEvent } from '../../common/events.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';
import { recipientIndexKey, recipientIndexKeys } from './recipient-index.js';

/** Events read per batch. */
const BATCH = 500;
/** The event log's key layout (event-log.ts): `e!` and the seq in 16 digits. */
const EVENT_KEY_PREFIX = 'e!';
const SEQ_WIDTH = 16;
/** Wait before looking again when the watermark is still below the deletion. */
const WAIT_MS = 100;
export const ERASE_JOB_PREFIX = 'rj!';

/** A durable erase job (key `rj!<id>`): deleted once done, and with it the last copy of the address it needed. */
export interface EraseJob {
  id: string;
  account: string;
  address: string;
  pseudonym: string;
  /** Seq of the recipient.deleted event: events up to it are rewritten. */
  upTo: number;
  /** Events up to this seq are done. */
  after: number;
  /** This node's log is done; the global feed's copies are next (storage.postgres: RecipientEraser). */
  localDone?: boolean;
}

export function jobKey(id: string): string {
  return ERASE_JOB_PREFIX + id;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Every string in the value with the address (any case) replaced. */
function scrub(v: unknown, re: RegExp, by: string): unknown {
  if (typeof v === 'string') return v.replace(re, by);
  if (Array.isArray(v)) return v.map((x) => scrub(x, re, by));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, scrub(x, re, by)]));
  return v;
}

export function eraseInEvent(e: PostinoEvent, address: string, pseudonym: string): PostinoEvent {
  const re = new RegExp(escapeRegExp(address), 'gi');
  return { ...(scrub(e, re, pseudonym) as PostinoEvent), recipient: pseudonym };
}

/**
 * One batch of a job: rewrites the matching events and moves `after`.
 * Resolves to the job as saved, `done` when it reached `upTo` (its key is then deleted).
 */
export async function eraseBatch(store: Store, events: EventLog, job: EraseJob, keepJob = false): Promise<{ job: EraseJob; done: boolean; rewritten: number }> {
  const batch = (await events.read(job.after, BATCH)).filter((e) => e.seq <= job.upTo);
  const folded = caseFoldedEmail(job.address);
  const ops: BatchOp[] = [];
  const empty = Buffer.alloc(0);
  let rewritten = 0;
  for (const e of batch) {
    if (e.account !== job.account || !e.recipient || caseFoldedEmail(e.recipient) !== folded) continue;
    const erased = eraseInEvent(e, job.address, job.pseudonym);
    ops.push({ type: 'put', key: EVENT_KEY_PREFIX + e.seq.toString().padStart(SEQ_WIDTH, '0'), value: Buffer.from(JSON.stringify(erased)) });
    // The recipient index follows the event: its entry moves from the address's digest to the pseudonym's.
    for (const key of recipientIndexKeys(e)) ops.push({ type: 'del', key });
    for (const key of recipientIndexKeys(erased)) ops.push({ type: 'put', key, value: empty });
    rewritten++;
  }
  // Nothing left below upTo that the log lets us see: past the last one read, or (all read) at upTo.
  const reachedTop = batch.length === 0 ? events.watermark >= job.upTo : batch[batch.length - 1]!.seq >= job.upTo;
  const next: EraseJob = { ...job, after: batch.length ? batch[batch.length - 1]!.seq : job.after };
  const done = reachedTop && (batch.length === 0 || next.after >= job.upTo);
  if (done) ops.push(...(await strayIndexEntries(store, job)));
  // keepJob: the job (and the address it needs) stays, marked, for the global feed's copies.
  const saved: EraseJob = done ? { ...next, localDone: true } : next;
  ops.push(done && !keepJob ? { type: 'del', key: jobKey(job.id) } : { type: 'put', key: jobKey(job.id), value: Buffer.from(JSON.stringify(saved)) });
  // Before and after the commit: no read meets the erased address in the log's tail cache.
  if (rewritten) events.dropTail();
  await store.commit(ops, { sync: done });
  if (rewritten) events.dropTail();
  return { job: saved, done, rewritten };
}

/**
 * Entries under the address's digest up to the deletion still left (one the
 * one-time index backfill wrote for an event while this job rewrote it): every
 * such event is erased by now, so none of them may stay.
 */
async function strayIndexEntries(store: Store, job: EraseJob): Promise<BatchOp[]> {
  const ops: BatchOp[] = [];
  const first = recipientIndexKey(job.account, job.address, 0);
  const prefix = first.slice(0, first.length - SEQ_WIDTH);
  for await (const key of store.db.keys({ gt: first, lte: recipientIndexKey(job.account, job.address, job.upTo) })) if (key.startsWith(prefix)) ops.push({ type: 'del', key });
  return ops;
}

/** Runs a job to its end, a batch at a time; `stopped` is checked between batches. `keepJob`: see eraseBatch. */
export async function eraseRecipientEvents(store: Store, events: EventLog, job: EraseJob, stopped: () => boolean, keepJob = false): Promise<{ done: boolean; rewritten: number }> {
  let rewritten = 0;
  let cur = job;
  while (!stopped()) {
    const r = await eraseBatch(store, events, cur, keepJob);
    rewritten += r.rewritten;
    if (r.done) return { done: true, rewritten };
    // No progress: an event below the deletion is still being committed (the watermark waits for it).
    if (r.job.after === cur.after) await sleep(WAIT_MS);
    else await turn(); // let SMTP and HTTP in between batches
    cur = r.job;
  }
  return { done: false, rewritten };
}
