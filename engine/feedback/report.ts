/*
 * report.ts — what one inbound report is: a bounce (with one class per
 * recipient), a complaint, an auto-reply, or unclassified with the reason.
 * The bounce intake attributes a report by its VERP token first; this module
 * only reads the report (DESIGN.md "What comes back").
 *
 * Standards: RFC 6522 (multipart/report), RFC 3464 (DSN), RFC 5965 (ARF),
 * RFC 3834 (auto-replies), RFC 3463 (status codes, see bounce-class.ts).
 *
 * The classifiers run in order, first match wins (Postal's dequeuer shape):
 *   arfComplaint     multipart/report; report-type=feedback-report
 *   rfc3464Dsn       multipart/report; report-type=delivery-status (or any
 *                    message/delivery-status part)
 *   autoReply        Auto-Submitted, X-Autoreply…, localised out-of-office
 *                    subjects, challenge-response texts
 *   plainTextBounce  qmail, Exim, Sendmail, Exchange, Yahoo… templates
 *   unclassified     everything else, with the reason
 * The two structured readers come first: an RFC 3464 DSN often carries
 * "Auto-Submitted: auto-replied" (RFC 3834 5 asks it of every automatic
 * response), and a structure is stronger evidence than a header. Auto-replies
 * come before plain-text bounces, so an out-of-office that says "my mailbox
 * is full" is never counted as a bounce; autoReply steps aside for a message
 * that is from a mailer daemon AND has a bounce subject or template (Exim's
 * bounces carry Auto-Submitted too).
 *
 * Bounds: see report-input.ts (first MAX_READ_BYTES, MAX_MULTIPARTS,
 * MAX_MIME_PARTS); all text scans are linear. Never throws.
 * Config: none. Side effects: none.
 */
import { arfComplaint } from './classifiers/arf-complaint.js';
import { autoReply } from './classifiers/auto-reply.js';
import { plainTextBounce } from './classifiers/plain-text-bounce.js';
import { rfc3464Dsn } from './classifiers/rfc3464-dsn.js';
import { unclassified } from './classifiers/unclassified.js';
import type { BounceClass } from './bounce-class.js';
import { readInput, type ReportInput } from './report-input.js';

export type { BounceClass } from './bounce-class.js';
export { MAX_READ_BYTES, MAX_MULTIPARTS, MAX_MIME_PARTS } from './report-input.js';

export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';

export interface ReportRecipient {
  /** Address from Final-Recipient (type prefix stripped), else Original-Recipient, else from the text. */
  recipient: string | undefined;
  originalRecipient?: string | undefined;
  action: DsnAction | undefined;
  /** RFC 3463 "x.y.z"; inferred from the text when the report gives none. */
  status: string | undefined;
  /** Diagnostic-Code text (type prefix stripped), or the lines a plain-text bounce gives for this recipient. */
  diagnostic?: string | undefined;
  /** 'none' for delivered / relayed / expanded; delayed is 'soft'. */
  class: BounceClass | 'none';
}

/** What identifies OUR copy inside the report, whichever part it comes from. */
export interface OriginalRefs {
  /** The original's Return-Path / envelope sender (our VERP address). */
  returnPath?: string | undefined;
  /** Message-ID of the original, angle brackets kept. */
  messageId?: string | undefined;
  /** Original-Rcpt-To (ARF), or To of the included original. */
  recipient?: string | undefined;
  /** Every X-Postino-* header of the included original, lower-cased names. */
  postinoHeaders: Record<string, string>;
  /** The original's X-Message-Ref (the copy's signed token, engine/rewrap/steps/feedback-ref.ts). */
  ref?: string | undefined;
}

export type FeedbackReport =
  | { kind: 'bounce'; format: 'rfc3464' | 'plain-text'; recipients: ReportRecipient[]; refs: OriginalRefs; reportingMta?: string | undefined }
  | { kind: 'complaint'; feedbackType: string; userAgent?: string | undefined; sourceIp?: string | undefined; arrivalDate?: string | undefined; refs: OriginalRefs }
  | { kind: 'auto-reply'; reason: string }
  | { kind: 'unclassified'; reason: string };

/** One step of the pipeline: a report, or undefined to let the next one look. */
export interface ReportClassifier {
  name: string;
  classify(input: ReportInput): FeedbackReport | undefined;
}

export const CLASSIFIERS: readonly ReportClassifier[] = [arfComplaint, rfc3464Dsn, autoReply, plainTextBounce, unclassified];

/** Never throws on any input (bad MIME, wrong charset, binary garbage, huge input): unreadable → unclassified with the reason. */
export async function readReport(raw: Buffer): Promise<FeedbackReport> {
  try {
    const read = await readInput(raw);
    if (read.kind === 'unreadable') return { kind: 'unclassified', reason: read.reason };
    for (const c of CLASSIFIERS) {
      const report = c.classify(read.input);
      if (report) return report;
    }
    return { kind: 'unclassified', reason: 'no classifier matched' };
  } catch (e) {
    return { kind: 'unclassified', reason: `unreadable: ${e instanceof Error ? e.message : String(e)}` };
  }
}
