/*
 * unclassified.ts (classifier) — last in the list, always matches: says why
 * nothing before could read the report, so the unclassified event explains
 * itself (DESIGN.md: a report that cannot be read is an event, never a guess).
 * Config: none. Side effects: none.
 */
import type { ReportClassifier } from '../report.js';
import { fromMailerDaemon } from './plain-text-bounce.js';

export const unclassified: ReportClassifier = {
  name: 'unclassified',
  classify(input) {
    const cut = input.truncated ? ' (only the start of the input was read)' : '';
    let reason: string;
    if (input.mimeProblem) reason = input.mimeProblem;
    else if (input.reportType === 'delivery-status' && input.deliveryStatus === undefined) reason = 'multipart/report (delivery-status) without a message/delivery-status part';
    else if (input.deliveryStatus !== undefined) reason = 'message/delivery-status part without recipient fields';
    else if (input.reportType === 'feedback-report') reason = 'multipart/report (feedback-report) without a message/feedback-report part';
    else if (input.contentType === 'multipart/report') reason = `multipart/report of unknown report-type "${input.reportType}"`;
    else if (fromMailerDaemon(input)) reason = 'delivery notice without a recipient or a reason';
    else reason = 'not a delivery report, feedback report or auto-reply';
    return { kind: 'unclassified', reason: reason + cut };
  },
};
