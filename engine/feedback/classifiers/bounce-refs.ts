/*
 * bounce-refs.ts — what identifies our copy in a bounce: the returned
 * original's headers, and our envelope sender. A bounce is sent to the
 * original's envelope sender (RFC 5321 4.5.5, 6.1), so when the original
 * carries no Return-Path (it was never delivered, so no MTA added one), the
 * sender is taken from the report: Postfix's X-Postfix-Sender, else the
 * report's Delivered-To / X-Original-To / To (where the intake received it).
 * Config: none. Side effects: none.
 */
import { addressOf, originalRefs } from '../report-fields.js';
import { header, type ReportInput } from '../report-input.js';
import type { OriginalRefs } from '../report.js';

export function bounceRefs(input: ReportInput, reportedSender?: string | undefined): OriginalRefs {
  const refs = originalRefs(input.originalHeaders);
  refs.returnPath ??= reportedSender ?? addressOf(header(input, 'delivered-to') ?? header(input, 'x-original-to') ?? header(input, 'to'));
  return refs;
}
