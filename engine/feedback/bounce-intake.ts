/*
 * bounce-intake.ts — the SMTP server of what comes back (default
 * 127.0.0.1:2526; in production the MX of the bounce domains points here).
 *
 * It accepts mail only for
 *   <bounceLocalPart>+<VERP token>@<bounce domain>  a DSN (or an ARF report, or an
 *                                                   auto-reply) about one copy; the token
 *                                                   is checked at RCPT against the copy
 *                                                   it names (copy-index.ts), so a forged
 *                                                   or changed return path is refused there
 *   <feedback.complaintLocalPart>@<bounce domain>   ARF complaints from feedback loops
 *   <feedback.unsubscribeLocalPart>@<bounce domain> the List-Unsubscribe mailto
 * and answers `550 5.1.1` for every other recipient: it is never a relay.
 * Bounces come from anywhere, so the listener's allowlist does not apply; it
 * has its own connection caps, session limit, error budget and size limit,
 * and the greeting delay of untrusted clients (smtp-server.ts).
 *
 * Like every intake of ours, `250` means the report is in a synced LevelDB
 * batch (common/smtp-intake.ts): the report worker reads it from the
 * `feedback` queue, so a crash between the two loses nothing.
 * Config: feedback.* (host, port, maxSize, maxConnections, maxConnectionsPerIp,
 * complaintLocalPart, unsubscribeLocalPart), engine.bounceDomain,
 * accounts[].engine.bounceDomain, engine.bounceLocalPart, listener.greetingDelayMs.
 * Side effects: listens on a TCP port; writes to the hosted store.
 */
import type { Config } from '../../common/config.js';
import { splitAddress } from '../../common/address.js';
import type { DurableQueue } from '../../common/durable-queue.js';
import { PostinoError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { KeyRing } from '../../common/signing-keys.js';
import { startIntake, type Envelope, type Intake } from '../../common/smtp-intake.js';
import { verifyVerpToken, verpQueueId, verpTokenOf } from '../../common/tokens.js';
import type { CopyIndex, CopyRecord } from './copy-index.js';

export interface FeedbackMeta {
  envelope: Envelope;
}

/** A session stuck longer than this is not a mail server reporting a bounce. */
const SESSION_MS = 10 * 60_000;
/** Syntax errors tolerated per session before it is closed (postscreen's spirit). */
const MAX_ERRORS = 10;
/** A bounce names one copy; a report to more than a few of our addresses is not a bounce. */
const MAX_RECIPIENTS = 10;

/** Which of our addresses a recipient is. */
export type FeedbackAddress = { kind: 'verp'; token: string } | { kind: 'complaint' } | { kind: 'unsubscribe' };

export interface FeedbackAddressBook {
  bounceDomains: ReadonlySet<string>;
  bounceLocalPart: string;
  complaintLocalPart: string;
  unsubscribeLocalPart: string;
}

export function feedbackAddressBook(config: Config): FeedbackAddressBook {
  const domains = [config.engine.bounceDomain, ...config.accounts.map((a) => a.engine.bounceDomain)].filter((d): d is string => Boolean(d)).map((d) => d.toLowerCase());
  return {
    bounceDomains: new Set(domains),
    bounceLocalPart: config.engine.bounceLocalPart,
    complaintLocalPart: config.feedback.complaintLocalPart,
    unsubscribeLocalPart: config.feedback.unsubscribeLocalPart,
  };
}

/** What this address is to us, or undefined: not ours (550). Local parts compare case-insensitively, as MTAs change them. */
export function feedbackAddress(book: FeedbackAddressBook, address: string): FeedbackAddress | undefined {
  const token = verpTokenOf(address, book.bounceLocalPart, book.bounceDomains);
  if (token) return { kind: 'verp', token };
  const parts = splitAddress(address);
  if (!parts?.local || !book.bounceDomains.has(parts.domain.toLowerCase())) return undefined;
  const local = parts.local.toLowerCase();
  if (local === book.complaintLocalPart.toLowerCase()) return { kind: 'complaint' };
  if (local === book.unsubscribeLocalPart.toLowerCase()) return { kind: 'unsubscribe' };
  return undefined;
}

/** The copy a VERP token names, when the token is ours for that copy's recipient. */
export async function copyOfVerpToken(copies: CopyIndex, keys: KeyRing, token: string): Promise<CopyRecord | undefined> {
  const id = verpQueueId(token);
  const copy = id ? await copies.get(id) : undefined;
  return copy && verifyVerpToken(keys, token, copy.recipient) ? copy : undefined;
}

export interface BounceIntakeOptions {
  config: Config;
  queue: DurableQueue<FeedbackMeta>;
  copies: CopyIndex;
  keys: KeyRing;
  log: Logger;
}

export async function startBounceIntake(o: BounceIntakeOptions): Promise<Intake> {
  const f = o.config.feedback;
  const book = feedbackAddressBook(o.config);
  return startIntake<FeedbackMeta>({
    name: 'bounce intake',
    host: f.host,
    port: f.port ?? 0,
    maxSize: f.maxSize,
    maxRecipients: MAX_RECIPIENTS,
    greetingDelayMs: o.config.listener.greetingDelayMs,
    trustedNetworks: o.config.listener.trustedNetworks,
    gate: { maxConnections: f.maxConnections, maxConnectionsPerIp: f.maxConnectionsPerIp, sessionMs: SESSION_MS, maxErrors: MAX_ERRORS, proxyFrom: o.config.listener.proxyProtocolFrom },
    idleTimeoutMs: o.config.listener.idleTimeoutSeconds * 1000,
    queue: o.queue,
    toMeta: (envelope) => ({ envelope }),
    log: o.log,
    policy: {
      async onRcptTo(address) {
        const a = feedbackAddress(book, address.address);
        if (a?.kind === 'verp' && (await copyOfVerpToken(o.copies, o.keys, a.token))) return;
        if (a && a.kind !== 'verp') return;
        // Not ours, or a return path that names no copy of ours (forged, changed, or forgotten).
        throw new PostinoError('NOT_FOUND', `<${address.address}>: no such user here`);
      },
    },
  });
}
