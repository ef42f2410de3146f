/*
 * report-worker.ts — reads each report the bounce intake queued, decides what
 * it means, and records it (recorder.ts) in the same synced batch that takes
 * it off the `feedback` queue: a crash repeats the work, never loses it.
 *
 * Attribution is by token first (DESIGN.md): the VERP address the report was
 * sent to (checked at RCPT), else the VERP return path of the original quoted
 * in the report, else its X-Message-Ref header, each checked the same way; for
 * a mailto unsubscribe, the token in the subject. What cannot be attributed or read is an `unclassified` event
 * whose report is kept under <data>/hosted/reports/, never a guess and never
 * a suppression.
 *
 *   bounce, action failed   → recorder.bounce (hard / soft / block)
 *   bounce, delayed / delivered / relayed / expanded → logged, nothing recorded
 *                             (a delay is a warning: the remote MTA still tries)
 *   complaint               → recorder.complaint (abuse, fraud, virus, other; not-spam and
 *                             auth-failure reports are logged and dropped)
 *   auto-reply              → logged and dropped: an out-of-office is not a bounce
 *   unsubscribe mailto      → recorder.unsubscribe (via mailto)
 *   unclassified            → recorder.unclassified, the report stored
 *
 * Side effects: reads queue bodies; writes reports/ files (fsynced) and LevelDB.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DurableQueue, QueueRecord } from '../../common/durable-queue.js';
import type { EventInput } from '../../common/events.js';
import { writeFileSynced } from '../../common/fsync.js';
import type { Logger } from '../../common/log.js';
import type { KeyRing } from '../../common/signing-keys.js';
import { verifyUnsubscribeToken, verpTokenOf } from '../../common/tokens.js';
import { feedbackAddress, copyOfVerpToken, type FeedbackAddressBook, type FeedbackMeta } from './bounce-intake.js';
import type { CopyIndex, CopyRecord } from './copy-index.js';
import type { Commit, FeedbackOutcome, FeedbackRecorder, ReportRef } from './recorder.js';
import { readReport, type FeedbackReport, type OriginalRefs, type ReportRecipient } from './report.js';

/**
 * RFC 5965 feedback types that mean "the recipient did not want this": they suppress.
 * `not-spam` (the opposite) and RFC 6591 `auth-failure` (a DMARC/SPF report about the
 * sender's setup) are not complaints about the recipient's mail.
 */
const COMPLAINT_TYPES = new Set(['abuse', 'fraud', 'virus', 'other']);

/** The part of a mailto-unsubscribe's subject that is the token (`unsubscribe <token>`). */
const SUBJECT_TOKEN = /([0-9a-z]{1,6}\.[A-Za-z0-9_-]{40,})/;

export interface ReportWorkerOptions {
  queue: DurableQueue<FeedbackMeta>;
  recorder: FeedbackRecorder;
  copies: CopyIndex;
  keys: KeyRing;
  book: FeedbackAddressBook;
  /** Where unreadable reports are kept. */
  reportsDir: string;
  log: Logger;
}

/** What one report became, for counters and tests. */
export type ReportResult = FeedbackOutcome | 'ignored' | 'unclassified';

export class ReportWorker {
  readonly counters: Record<ReportResult, number> = { suppressed: 0, counted: 0, recorded: 0, already: 0, ignored: 0, unclassified: 0 };

  constructor(private readonly o: ReportWorkerOptions) {
    fs.mkdirSync(o.reportsDir, { recursive: true, mode: 0o700 });
  }

  /** The `failed` event of a report whose handling kept throwing (common/dead-letter.ts): attributed to no account. */
  failedEvents(rec: QueueRecord<FeedbackMeta>, reason: string): EventInput[] {
    return [{ type: 'failed', account: '', queueId: rec.id, sender: rec.meta.envelope.mailFrom, reason }];
  }

  async handle(rec: QueueRecord<FeedbackMeta>): Promise<void> {
    const log = this.o.log.child({ queueId: rec.id });
    const raw = await this.o.queue.readBody(rec);
    const report = await readReport(raw);
    const commit: Commit = (ops) => this.o.queue.ack(rec, ops, true);
    const result = await this.decide(rec, raw, report, commit, log);
    this.counters[result]++;
    if (result === 'ignored') await commit([]);
  }

  private async decide(rec: QueueRecord<FeedbackMeta>, raw: Buffer, report: FeedbackReport, commit: Commit, log: Logger): Promise<ReportResult> {
    const targets = rec.meta.envelope.rcptTo.map((r) => feedbackAddress(this.o.book, r));
    const ref = (format: string, extra: Partial<ReportRef> = {}): ReportRef => ({ id: rec.id, format, ...extra });

    if (targets.some((t) => t?.kind === 'unsubscribe') && report.kind !== 'bounce' && report.kind !== 'complaint') {
      const claim = verifyUnsubscribeToken(this.o.keys, SUBJECT_TOKEN.exec(subjectOf(raw))?.[1] ?? '');
      if (!claim) {
        log.info({ event: 'ignored', why: 'mailto unsubscribe without a valid token' }, 'report ignored');
        return 'ignored';
      }
      return this.o.recorder.unsubscribe(claim, 'mailto', ref('mailto'), commit);
    }

    const copy = await this.attribute(targets, report.kind === 'bounce' || report.kind === 'complaint' ? report.refs : undefined);
    switch (report.kind) {
      case 'auto-reply':
        log.info({ event: 'ignored', why: 'auto-reply', reason: report.reason }, 'auto-reply ignored');
        return 'ignored';
      case 'unclassified':
        return this.unclassified(rec, raw, report.reason, copy, commit);
      case 'complaint': {
        if (!COMPLAINT_TYPES.has(report.feedbackType)) {
          log.info({ event: 'ignored', why: `feedback type ${report.feedbackType}` }, 'feedback report is not a complaint');
          return 'ignored';
        }
        if (!copy) return this.unclassified(rec, raw, 'complaint about no copy of ours (no valid VERP token)', undefined, commit);
        return this.o.recorder.complaint(copy, ref('arf', { feedbackType: report.feedbackType }), commit);
      }
      case 'bounce': {
        if (!copy) return this.unclassified(rec, raw, `${report.format} bounce about no copy of ours (no valid VERP token)`, undefined, commit);
        const r = pick(report.recipients, copy.recipient);
        if (!r || r.action !== 'failed' || r.class === 'none') {
          log.info({ event: 'ignored', why: `DSN action ${r?.action ?? 'none'}`, status: r?.status }, 'DSN is not a failure');
          return 'ignored';
        }
        if (!r.status) return this.unclassified(rec, raw, 'bounce without a status', copy, commit);
        return this.o.recorder.bounce(copy, { class: r.class, status: r.status, diagnostic: r.diagnostic }, ref(report.format === 'rfc3464' ? 'dsn' : 'plain-text', { reportingMta: report.reportingMta }), commit);
      }
    }
  }

  /**
   * The copy named by a VERP address the report was sent to, else by the quoted original's
   * return path, else by its X-Message-Ref header (engine/rewrap/steps/feedback-ref.ts); each checked.
   */
  private async attribute(targets: Array<ReturnType<typeof feedbackAddress>>, refs: OriginalRefs | undefined): Promise<CopyRecord | undefined> {
    for (const t of targets) if (t?.kind === 'verp') return copyOfVerpToken(this.o.copies, this.o.keys, t.token);
    const quoted = refs?.returnPath && verpTokenOf(refs.returnPath.replace(/^<|>$/g, ''), this.o.book.bounceLocalPart, this.o.book.bounceDomains);
    const token = quoted || refs?.ref;
    return token ? copyOfVerpToken(this.o.copies, this.o.keys, token) : undefined;
  }

  private async unclassified(rec: QueueRecord<FeedbackMeta>, raw: Buffer, reason: string, copy: CopyRecord | undefined, commit: Commit): Promise<ReportResult> {
    const stored = path.join(this.o.reportsDir, `${rec.id}.eml`);
    await writeFileSynced(stored, [raw]);
    await this.o.recorder.unclassified(copy, reason, { id: rec.id, format: 'unknown', stored: path.basename(stored) }, commit);
    this.o.log.warn({ event: 'unclassified', queueId: rec.id, reason, stored }, 'report kept unclassified');
    return 'unclassified';
  }
}

/** The entry for the copy's recipient; else the first failure (the report may name the address as rewritten by forwarding). */
function pick(recipients: readonly ReportRecipient[], recipient: string): ReportRecipient | undefined {
  const lower = recipient.toLowerCase();
  return recipients.find((r) => r.recipient?.toLowerCase() === lower || r.originalRecipient?.toLowerCase() === lower) ?? recipients.find((r) => r.action === 'failed') ?? recipients[0];
}

function subjectOf(raw: Buffer): string {
  const head = raw.subarray(0, 64 * 1024).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  const m = /^subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(end === -1 ? head : head.slice(0, end));
  return m ? m[1]!.replace(/\r?\n[ \t]/g, ' ') : '';
}
