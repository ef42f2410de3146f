/*
 * classify.ts — what a relay's answer means for one copy, decided in one place
 * (Haraka's lesson): delivered, deferred (retry), or bounced hard/soft, or held
 * when no relay answered at all (the relays are down, the copy is not at
 * fault); and which provider back-pressure rule a 4xx matches.
 *
 * Standards: RFC 5321 4.2.1 (reply classes), RFC 3463 (enhanced status codes).
 * The bounce class of a 5xx comes from the one classifier that also reads
 * DSNs (engine/feedback/bounce-class.ts), so a bounce in the SMTP session and
 * the same bounce in a later DSN are the same class: hard (X.1.x addressing,
 * X.2.1 disabled; suppressed), block (X.7.x policy, spam, reputation, rate
 * limits: the sender's problem, never suppressed), soft (everything else:
 * this message or this moment, e.g. X.2.2 mailbox full, X.3.4 too large).
 *
 * Config: delivery.backPressure ([provider-try-later, too-many]).
 * Side effects: none.
 */
import type { BackPressureRule } from '../../common/config.js';
import type { SendOutcome, SmtpReply } from '../../common/smtp-client.js';
import { SendFailure } from '../../common/smtp-client.js';
import { classifyStatus, type BounceClass } from '../feedback/bounce-class.js';

export type { BounceClass };

export type AttemptOutcome =
  | { kind: 'delivered'; relay: string; reply: SmtpReply }
  /** No relay reachable: the relays' state (relay-health.ts), not this copy's; no try is charged. */
  | { kind: 'held'; reason: string }
  | { kind: 'deferred'; relay?: string | undefined; reply?: SmtpReply | undefined; reason: string }
  | { kind: 'bounced'; relay?: string | undefined; reply: SmtpReply; bounceClass: BounceClass };

export function bounceClass(reply: SmtpReply): BounceClass {
  return classifyStatus(reply.enhanced || undefined, reply.response, reply.code);
}

/** One copy has one recipient: its RCPT reply, else the transaction's. */
export function classifySent(sent: SendOutcome): AttemptOutcome {
  const r = sent.rejected[0];
  if (!r) return { kind: 'delivered', relay: sent.relay, reply: sent.reply };
  return fromReply(r, sent.relay);
}

export function classifyFailure(e: SendFailure): AttemptOutcome {
  const reply = e.rejected[0] ?? e.reply;
  if (!reply) return { kind: 'held', reason: e.message };
  return fromReply(reply, e.relay);
}

function fromReply(reply: SmtpReply, relay: string | undefined): AttemptOutcome {
  const r: SmtpReply = { code: reply.code, enhanced: reply.enhanced, response: reply.response };
  if (r.code >= 500) return { kind: 'bounced', relay, reply: r, bounceClass: bounceClass(r) };
  if (r.code >= 200 && r.code < 300) return { kind: 'delivered', relay: relay ?? '', reply: r };
  return { kind: 'deferred', relay, reply: r, reason: r.response || `reply ${r.code}` };
}

export class BackPressureRules {
  private readonly compiled: Array<{ rule: BackPressureRule; re: RegExp }>;

  constructor(rules: readonly BackPressureRule[]) {
    this.compiled = rules.map((rule) => ({ rule, re: new RegExp(rule.match, 'i') }));
  }

  /** The first rule whose pattern matches a 4xx reply's text. */
  match(reply: SmtpReply | undefined): BackPressureRule | undefined {
    if (!reply || reply.code < 400 || reply.code >= 500) return undefined;
    return this.compiled.find((c) => c.re.test(reply.response))?.rule;
  }
}
