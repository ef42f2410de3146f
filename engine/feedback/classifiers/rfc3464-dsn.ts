/*
 * rfc3464-dsn.ts (classifier) — a delivery status notification: the
 * message/delivery-status part of a multipart/report (report-type
 * delivery-status), one per-message field group and one group per recipient.
 *
 * Standards: RFC 3464 2.2 (per-message: Reporting-MTA, X-Postfix-Sender),
 * 2.3 (per-recipient: Final-Recipient, Original-Recipient, Action, Status,
 * Diagnostic-Code), RFC 6533 (global DSNs: utf-8 address types), RFC 6522.
 * Matches any report with a delivery-status part, declared report-type or not
 * (some MTAs leave it out). A part without a single recipient group is not
 * read as a bounce: the next classifiers look at the text, else unclassified.
 * Action decides 'none' (delivered, relayed, expanded) and 'soft' (delayed);
 * failed recipients go through bounce-class.ts. A group without an Action is
 * read from its Status class (2 none, 4 soft, 5 failed).
 * Config: none. Side effects: none.
 */
import { findReplyCode, resolveFailure } from '../bounce-class.js';
import { addressOf, fieldGroups, stripType, type FieldGroup } from '../report-fields.js';
import type { DsnAction, ReportClassifier, ReportRecipient } from '../report.js';
import { bounceRefs } from './bounce-refs.js';

const ACTIONS: ReadonlySet<string> = new Set<DsnAction>(['failed', 'delayed', 'delivered', 'relayed', 'expanded']);
const RECIPIENT_FIELDS = ['final-recipient', 'original-recipient', 'action', 'status'];

export const rfc3464Dsn: ReportClassifier = {
  name: 'rfc3464Dsn',
  classify(input) {
    if (input.deliveryStatus === undefined) return undefined;
    const groups = fieldGroups(input.deliveryStatus);
    const recipientGroups = groups.filter((g) => RECIPIENT_FIELDS.some((f) => g.has(f)));
    if (recipientGroups.length === 0) return undefined;
    const perMessage = groups[0] && !recipientGroups.includes(groups[0]) ? groups[0] : undefined;
    return {
      kind: 'bounce',
      format: 'rfc3464',
      recipients: recipientGroups.map(readRecipient),
      refs: bounceRefs(input, addressOf(stripType(perMessage?.get('x-postfix-sender')))),
      reportingMta: stripType(perMessage?.get('reporting-mta')),
    };
  },
};

function readRecipient(g: FieldGroup): ReportRecipient {
  const final = addressField(g.get('final-recipient'));
  const original = addressField(g.get('original-recipient'));
  const actionWord = (g.get('action') ?? '').trim().split(/[\s(;]/)[0]!.toLowerCase();
  const action = ACTIONS.has(actionWord) ? (actionWord as DsnAction) : undefined; // checked against the set above
  const diagnostic = stripType(g.get('diagnostic-code'));
  const given = g.get('status');
  const r: ReportRecipient = { recipient: final ?? original, originalRecipient: original, action, status: undefined, diagnostic, class: 'none' };
  const statusClass = (given ?? '').trim()[0];
  const effective = action ?? (statusClass === '2' ? 'delivered' : statusClass === '4' ? 'delayed' : 'failed');
  const resolved = resolveFailure(given?.trim().split(/[\s(]/)[0], diagnostic ?? '', diagnostic ? findReplyCode(diagnostic) : undefined);
  r.status = resolved.status;
  if (effective === 'failed') r.class = resolved.class;
  else if (effective === 'delayed') r.class = 'soft';
  return r;
}

function addressField(value: string | undefined): string | undefined {
  const v = stripType(value);
  if (v === undefined) return undefined;
  return addressOf(v) ?? (v.replace(/^<|>$/g, '').trim() || undefined);
}
