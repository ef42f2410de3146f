/*
 * recorder.ts — turns what came back into state and events: one synced
 * LevelDB batch holds the suppression change (if any) and the event that
 * reports it, plus whatever the caller commits with it (the removal of the
 * report from the feedback queue), so after a crash the feed, the statistics
 * and the suppression list never disagree (DESIGN.md, "What comes back").
 *
 *   unsubscribe  suppression in the list's scope (or account-wide) + `unsubscribed`;
 *                idempotent: a second request finds the entry and writes nothing
 *   bounce       hard → suppression + `bounced` (class hard); soft → `bounced`, and the
 *                feedback.softBounceLimit-th soft bounce within softBounceDays suppresses
 *                too; block (the receiver refused the sender) → `bounced`, never a suppression
 *   complaint    suppression (account-wide) + `complained`
 *   open/click   `opened` (first or repeat) / `clicked` with the URL, `machine` for prefetchers
 *   unclassified `unclassified` with a reference to the stored report
 *
 * Guarantee 4: a suppression is committed before the call returns, so the next
 * message to the address, rewrapped after it, is suppressed.
 * Config: feedback.softBounceLimit (5), softBounceDays (14), scannerClickSeconds (10).
 * Side effects: LevelDB writes (synced).
 */
import type { EventInput } from '../../common/events.js';
import type { FeedbackConfig } from '../../common/config.js';
import { KeyedLock } from '../../common/keyed-lock.js';
import type { Logger } from '../../common/log.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { ClickClaim, OpenClaim, UnsubscribeClaim } from '../../common/tokens.js';
import type { EventLog } from '../events/event-log.js';
import { normalizeEmail } from '../../common/address.js';
import { PostinoError } from '../../common/errors.js';
import { listScope, type SuppressionList, type SuppressionReason } from '../suppression.js';
import { classifyClick, classifyClient } from './client-class.js';
import type { CopyIndex, CopyRecord } from './copy-index.js';

const DAY_MS = 86_400_000;
/** Marks `o!<queue id>`: the copy was opened before (first and repeat opens are told apart). */
const OPENED = 'o!';
/** Marks `k!<queue id>`: a person clicked in the copy before (unique clicks). */
const CLICKED = 'k!';
/** Soft bounces `sb!<account>!<address>!<time, 13 digits>`: counted in a window, pruned as they age. */
const SOFT = 'sb!';

import type { BounceClass } from './bounce-class.js';

/** Where a report came from, carried into the event. */
export interface ReportRef {
  id: string;
  format: string;
  reportingMta?: string | undefined;
  feedbackType?: string | undefined;
  stored?: string | undefined;
}

export interface BounceFacts {
  class: BounceClass;
  status: string;
  diagnostic?: string | undefined;
}

/** What a report did: the caller's log line and the intake's counters. */
export type FeedbackOutcome = 'suppressed' | 'counted' | 'recorded' | 'already';

export interface RecorderOptions {
  store: Store;
  events: EventLog;
  suppression: SuppressionList;
  copies: CopyIndex;
  config: FeedbackConfig;
  log: Logger;
  now?: () => number;
}

/** Commits ops of the caller's (e.g. a queue removal) with ours; false = the caller's part lapsed. */
export type Commit = (ops: BatchOp[]) => Promise<boolean | void>;

export class FeedbackRecorder {
  private readonly lock = new KeyedLock();
  private readonly now: () => number;

  constructor(private readonly o: RecorderOptions) {
    this.now = o.now ?? Date.now;
  }

  private commitSynced: Commit = (ops) => this.o.store.commit(ops, { sync: true });

  /** The event fields every feedback event about a copy carries. */
  private about(copy: CopyRecord | undefined, account: string, recipient: string, queueId: string): EventInput {
    return {
      type: 'unclassified', // replaced by each caller
      account,
      recipient,
      queueId: queueId || undefined,
      messageId: copy?.messageId,
      sender: copy?.sender,
      tag: copy?.tag,
      metadata: copy?.metadata,
      stream: copy?.stream,
    };
  }

  private async record(inputs: EventInput[], ops: BatchOp[], commit: Commit): Promise<void> {
    await this.o.events.commitWith(inputs, (eventOps) => commit([...ops, ...eventOps]));
  }

  /** One-click, the confirmation page or a mailto: suppressed in the list's scope, once. */
  async unsubscribe(claim: UnsubscribeClaim, via: 'one-click' | 'page' | 'mailto', report?: ReportRef, commit: Commit = this.commitSynced): Promise<FeedbackOutcome> {
    const scope = claim.list ? listScope(claim.list) : '*';
    const address = normalizeEmail(claim.recipient);
    return this.lock.run(`${claim.account}!${address}`, async () => {
      const existing = await this.o.suppression.get(claim.account, address, scope).catch((e: unknown) => {
        // A person's unsubscribe is never refused for a database outage (storage.postgres down):
        // without the list to ask, it is recorded as new and parked until the database returns.
        if (e instanceof PostinoError && e.code === 'SHARED_STATE_UNAVAILABLE') return undefined;
        throw e;
      });
      if (existing && existing.reason === 'unsubscribe') {
        await commit([]);
        return 'already';
      }
      const copy = claim.queueId ? await this.o.copies.get(claim.queueId) : undefined;
      const ops = existing ? [] : await this.o.suppression.addOps(claim.account, [{ address, scope, reason: 'unsubscribe', detail: via, queueId: claim.queueId || undefined, at: new Date(this.now()).toISOString() }]);
      const ev: EventInput = { ...this.about(copy, claim.account, address, claim.queueId), type: 'unsubscribed', via, list: claim.list, report, suppressedNow: !existing };
      await this.record([ev], ops, commit);
      this.o.log.info({ event: 'unsubscribed', account: claim.account, queueId: claim.queueId, list: claim.list, via }, 'unsubscribed');
      return 'suppressed';
    });
  }

  /** A bounce of one copy's recipient, from a DSN (the synchronous ones are the delivery worker's). */
  async bounce(copy: CopyRecord, facts: BounceFacts, report: ReportRef, commit: Commit = this.commitSynced): Promise<FeedbackOutcome> {
    const address = normalizeEmail(copy.recipient);
    return this.lock.run(`${copy.account}!${address}`, async () => {
      const now = this.now();
      const ev: EventInput = {
        ...this.about(copy, copy.account, address, copy.queueId),
        type: 'bounced',
        bounce: { class: facts.class, status: facts.status, source: 'dsn' },
        reason: facts.diagnostic,
        report,
      };
      const ops: BatchOp[] = [];
      let reason: SuppressionReason | undefined;
      if (facts.class === 'hard') reason = 'hard-bounce';
      if (facts.class === 'soft') {
        const { count, prune } = await this.recentSoftBounces(copy.account, address, now);
        ops.push(...prune, { type: 'put', key: softKey(copy.account, address, now), value: Buffer.from(copy.queueId) });
        if (count + 1 >= this.o.config.softBounceLimit) reason = 'soft-bounces';
      }
      const outcome = await this.suppressWith(copy.account, address, reason, `${facts.status} ${facts.diagnostic ?? ''}`.trim(), copy.queueId, ops, ev);
      await this.record([ev], ops, commit);
      return outcome ?? (facts.class === 'soft' ? 'counted' : 'recorded');
    });
  }

  /** An ARF complaint about one copy: the recipient asked not to get our mail. */
  async complaint(copy: CopyRecord, report: ReportRef, commit: Commit = this.commitSynced): Promise<FeedbackOutcome> {
    const address = normalizeEmail(copy.recipient);
    return this.lock.run(`${copy.account}!${address}`, async () => {
      const ev: EventInput = { ...this.about(copy, copy.account, address, copy.queueId), type: 'complained', report };
      const ops: BatchOp[] = [];
      const outcome = await this.suppressWith(copy.account, address, 'complaint', report.feedbackType ?? 'abuse', copy.queueId, ops, ev);
      await this.record([ev], ops, commit);
      return outcome ?? 'recorded';
    });
  }

  /**
   * A report nobody could read, or about no copy of ours: kept, reported, nothing suppressed.
   * With its copy when the VERP address named one (the account sees it), else node-wide (account '').
   */
  async unclassified(copy: CopyRecord | undefined, reason: string, report: ReportRef, commit: Commit = this.commitSynced): Promise<FeedbackOutcome> {
    const ev: EventInput = copy ? { ...this.about(copy, copy.account, copy.recipient, copy.queueId), type: 'unclassified', reason, report } : { type: 'unclassified', account: '', reason, report };
    await this.record([ev], [], commit);
    return 'recorded';
  }

  async open(claim: OpenClaim, userAgent: string | undefined): Promise<void> {
    const client = classifyClient(userAgent);
    await this.lock.run(`${OPENED}${claim.queueId}`, async () => {
      const marker = OPENED + claim.queueId;
      const first = (await this.o.store.db.get(marker)) === undefined;
      const copy = await this.o.copies.get(claim.queueId);
      const ev: EventInput = { ...this.about(copy, claim.account, claim.recipient, claim.queueId), type: 'opened', first, machine: client.machine, userAgent: client.class };
      // Opens are statistics, not state a guarantee hangs on: not synced (a crash may lose the last few).
      await this.record([ev], first ? [{ type: 'put', key: marker, value: Buffer.from('1') }] : [], (ops) => this.o.store.commit(ops, { sync: false }));
    });
  }

  async click(claim: ClickClaim, userAgent: string | undefined): Promise<void> {
    const copy = await this.o.copies.get(claim.queueId);
    const client = classifyClick(userAgent, copy ? this.now() - copy.due : -1, this.o.config.scannerClickSeconds * 1000);
    const ev: EventInput = { ...this.about(copy, claim.account, claim.recipient, claim.queueId), type: 'clicked', url: claim.url, machine: client.machine, userAgent: client.class };
    if (client.machine) {
      await this.record([ev], [], (ops) => this.o.store.commit(ops, { sync: false }));
      return;
    }
    // A person's clicks: the first of this copy is marked (unique clicks in the statistics).
    const marker = CLICKED + claim.queueId;
    await this.lock.run(marker, async () => {
      ev.first = (await this.o.store.db.get(marker)) === undefined;
      await this.record([ev], ev.first ? [{ type: 'put', key: marker, value: Buffer.from('1') }] : [], (ops) => this.o.store.commit(ops, { sync: false }));
    });
  }

  /** Adds the suppression ops (unless the address is already suppressed account-wide) and marks the event. */
  private async suppressWith(account: string, address: string, reason: SuppressionReason | undefined, detail: string, queueId: string, ops: BatchOp[], ev: EventInput): Promise<FeedbackOutcome | undefined> {
    if (!reason) return undefined;
    const existing = await this.o.suppression.get(account, address, '*');
    ev.suppressedNow = !existing;
    if (existing) return 'already';
    ops.push(...(await this.o.suppression.addOps(account, [{ address, scope: '*', reason, detail, queueId, at: new Date(this.now()).toISOString() }])));
    this.o.log.info({ event: 'suppressed', account, queueId, reason }, 'address suppressed');
    return 'suppressed';
  }

  private async recentSoftBounces(account: string, address: string, now: number): Promise<{ count: number; prune: BatchOp[] }> {
    const from = now - this.o.config.softBounceDays * DAY_MS;
    const prefix = `${SOFT}${account}!${address}!`;
    let count = 0;
    const prune: BatchOp[] = [];
    for await (const k of this.o.store.db.keys({ gte: prefix, lt: prefix + '~' })) {
      if (Number(k.slice(prefix.length)) < from) prune.push({ type: 'del', key: k });
      else count++;
    }
    return { count, prune };
  }
}

function softKey(account: string, address: string, at: number): string {
  return `${SOFT}${account}!${address}!${String(at).padStart(13, '0')}`;
}
