/*
 * arf-complaint.ts (classifier) — a feedback-loop report: the
 * message/feedback-report part of a multipart/report (report-type
 * feedback-report), with the original as message/rfc822 or, when the provider
 * redacts bodies, as text/rfc822-headers.
 *
 * Standards: RFC 5965 3.1 (Feedback-Type, User-Agent, Version required;
 * Original-Mail-From, Original-Rcpt-To, Arrival-Date, Source-IP optional;
 * "Received-Date" is the pre-RFC spelling some providers still send),
 * RFC 6650 (FBL use), RFC 6591 (auth-failure reports use the same format).
 * The Feedback-Type is passed through lower-cased (abuse, fraud, virus, other,
 * not-spam, auth-failure): the integrator decides which suppress. A part
 * without one is read as 'other', RFC 5965's catch-all, not as 'abuse'.
 * Our envelope sender is Original-Mail-From (what the receiver saw in MAIL
 * FROM), else the original's Return-Path; the recipient Original-Rcpt-To,
 * else the original's To. The report's own To is the FBL mailbox, not ours.
 * Config: none. Side effects: none.
 */
import { addressOf, fieldGroups, originalRefs, stripType } from '../report-fields.js';
import type { ReportClassifier } from '../report.js';

export const arfComplaint: ReportClassifier = {
  name: 'arfComplaint',
  classify(input) {
    if (input.feedbackReport === undefined) return undefined;
    const fields = new Map<string, string>();
    for (const g of fieldGroups(input.feedbackReport)) for (const [k, v] of g) if (!fields.has(k)) fields.set(k, v);
    const refs = originalRefs(input.originalHeaders);
    refs.returnPath = addressOf(stripType(fields.get('original-mail-from'))) ?? refs.returnPath;
    refs.recipient = addressOf(stripType(fields.get('original-rcpt-to'))) ?? refs.recipient;
    const feedbackType = (fields.get('feedback-type') ?? '').trim().split(/\s/)[0]!.toLowerCase() || 'other';
    return {
      kind: 'complaint',
      feedbackType,
      userAgent: fields.get('user-agent'),
      sourceIp: fields.get('source-ip'),
      arrivalDate: fields.get('arrival-date') ?? fields.get('received-date'),
      refs,
    };
  },
};
