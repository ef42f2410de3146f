/*
 * erase.ts — deleting a recipient on a privacy request (DELETE
 * /api/recipients/<address>).
 *
 * In one synced LevelDB batch: the entry, its merge fields and its counters
 * are removed; a "deleted" marker keyed by the pseudonym is written (traffic
 * and imports do not create the entry again); an account-wide suppression is
 * added unless one exists (reason `manual`, detail DELETED_DETAIL), so the
 * address is never mailed again by accident; the `recipient.deleted` event is
 * appended (recipient = the pseudonym); and an erase job is stored. The job
 * then replaces the address by the pseudonym in the stored events
 * (events/erase-recipient.ts), in the background, resuming after a restart.
 *
 * Kept, on purpose: the suppression entry (it must name the address to stop
 * mail to it), the erase job until it is done (it needs the address to find
 * the events), and the copy records of mail already sent (feedback attribution;
 * they expire after feedback.copyRetentionDays).
 * With storage.postgres the entry and the marker are in the shared table:
 * removed and written there first (one transaction; PostgreSQL down: 503 and
 * nothing done), then the local batch (event, job) as above.
 * Side effects: LevelDB reads and writes; a background job.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import { ERASE_JOB_PREFIX, eraseRecipientEvents, jobKey, type EraseJob } from '../events/erase-recipient.js';
import type { EventLog } from '../events/event-log.js';
import type { RecipientDb } from '../recipient-db.js';
import type { SuppressionList } from '../suppression.js';
import type { Pseudonymizer } from './pseudonym.js';

export const DELETED_DETAIL = 'recipient deleted (privacy request)';
/** While the global feed cannot be erased (PostgreSQL down), the job is tried again this often. */
const FEED_RETRY_MS = 5_000;

export interface EraserOptions {
  store: Store;
  events: EventLog;
  db: RecipientDb;
  suppression: SuppressionList;
  pseudonyms: Pseudonymizer;
  log: Logger;
  /**
   * With storage.postgres: takes the address out of the global feed's copies of the events (every
   * node's), once this node's log is done; throws while PostgreSQL does not answer, and the job stays.
   */
  eraseFromFeed?: ((job: EraseJob) => Promise<number>) | undefined;
}

export class RecipientEraser {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  constructor(private readonly o: EraserOptions) {}

  /** Resumes the jobs a stop or crash left. */
  start(): void {
    this.wake();
  }

  /** Deletes the entry (see the header); undefined when the account has no such recipient. */
  async delete(account: string, address: string): Promise<{ pseudonym: string; seq: number } | undefined> {
    const { db, events, store, suppression } = this.o;
    const r = await db.exclusive(async () => {
      if (!(await db.get(account, address))) return undefined;
      const at = new Date().toISOString();
      const pseudonym = this.o.pseudonyms.of(account, address);
      const ops = await db.eraseOps(account, address, at);
      if (!(await suppression.get(account, address, '*'))) ops.push(...(await suppression.addOps(account, [{ address, scope: '*', reason: 'manual', detail: DELETED_DETAIL, at }])));
      const ev = events.prepare([{ type: 'recipient.deleted', account, recipient: pseudonym, reason: 'privacy request: fields and history removed, suppression kept' }]);
      const seq = ev.events[0]!.seq;
      const job: EraseJob = { id: `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`, account, address, pseudonym, upTo: seq, after: 0 };
      ops.push(...ev.ops, { type: 'put', key: jobKey(job.id), value: Buffer.from(JSON.stringify(job)) });
      try {
        await store.commit(ops, { sync: true });
      } catch (e) {
        events.abandon(ev);
        throw e;
      }
      events.settle(ev);
      return { pseudonym, seq };
    });
    if (r) this.wake();
    return r;
  }

  /** Resolves when no erase job is left (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.idle();
  }

  private wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.runJobs()
      .catch((err: unknown) => this.o.log.error({ err, event: 'recipient-erase-failed' }, 'erasing a deleted recipient from the events failed; resumed at the next start or deletion'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async runJobs(): Promise<void> {
    const { store, events, log } = this.o;
    for (;;) {
      const jobs: EraseJob[] = [];
      for await (const v of store.db.values({ gte: ERASE_JOB_PREFIX, lt: `${ERASE_JOB_PREFIX}\uffff` })) jobs.push(JSON.parse(v.toString('utf8')) as EraseJob);
      if (jobs.length === 0 || this.stopped) return;
      for (const job of jobs) {
        const feed = this.o.eraseFromFeed;
        if (!job.localDone) {
          const r = await eraseRecipientEvents(store, events, job, () => this.stopped, feed !== undefined);
          if (!r.done) return;
          log.info({ event: 'recipient-erased', account: job.account, recipient: job.pseudonym, eventsRewritten: r.rewritten }, 'deleted recipient erased from the stored events');
        }
        if (feed) {
          let n: number;
          try {
            n = await feed(job);
          } catch (err) {
            // PostgreSQL does not answer (or this node has not shipped up to the deletion yet): the job stays; again soon.
            log.warn({ event: 'recipient-erase-feed-waiting', account: job.account, recipient: job.pseudonym, err: { message: (err as Error).message } }, `the global feed's copies are erased once PostgreSQL answers; retrying in ${FEED_RETRY_MS / 1000} s`);
            setTimeout(() => this.wake(), FEED_RETRY_MS).unref();
            return;
          }
          await store.commit([{ type: 'del', key: jobKey(job.id) }], { sync: true });
          log.info({ event: 'recipient-erased-feed', account: job.account, recipient: job.pseudonym, eventsRewritten: n }, 'deleted recipient erased from the global event feed');
        }
      }
    }
  }
}
