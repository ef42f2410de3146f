/*
 * smtp-client.ts — send one message to the first of a list of SMTP relays that
 * answers, through a pool of nodemailer SMTP sessions (smtp-pool.ts), and say
 * exactly what happened per recipient.
 *
 * Standards: RFC 5321 (client side), RFC 3207 (STARTTLS), RFC 3463 (enhanced
 * status codes, parsed from replies).
 *
 * Failover: a failure before any SMTP reply (refused, timeout, TLS failure) is
 * a connection failure and the next URL is tried, and so is a refused STARTTLS
 * or AUTH (a session problem, never a reason to bounce); a reply to the
 * message (4xx/5xx) is an answer and is returned as is — another relay would
 * not know better. A connection failure also marks that relay down
 * (relay-health.ts): later sends skip it until a probe finds it up again, and
 * with every relay down `send` fails at once, without a connection attempt.
 * For RelayClient (the forwarder, whose next hop is always our listener) a
 * 421 counts as a connection failure too: the listener says it is closing the
 * session (shutting down, at its connection cap), which is about the node, not
 * the message (RFC 5321 4.2.3: "service not available, closing channel").
 *
 * Config: forwarder.relay.* (urls, requireTls, …, probeScheduleSeconds).
 *
 * Side effects: network connections (pooled, kept open up to
 * `messagesPerConnection` messages).
 */
import type { Logger } from './log.js';
import { redactUrl } from './redact.js';
import { RelayHealth } from './relay-health.js';
import type { EnvelopeDsn } from './smtp-intake.js';
import { SmtpPool, type BodySource, type SmtpError } from './smtp-pool.js';
import { TLS_CIPHERS } from './tls-ciphers.js';

/** What one pooled transport to one relay needs. */
export interface TransportOptions {
  /** Refuse to send in clear: STARTTLS must succeed (ignored for smtps://). */
  requireTls: boolean;
  verifyCertificate: boolean;
  /** Extra trusted CA certificates (PEM). */
  ca?: string | undefined;
  serverName?: string | null | undefined;
  maxConnections: number;
  messagesPerConnection: number;
  timeoutMs: number;
  /** Name we give in EHLO. */
  clientName: string;
  /** Source address for outgoing connections. */
  localAddress?: string | undefined;
}

export interface RelayClientOptions extends TransportOptions {
  /** Relays tried in order (failover). */
  urls: readonly string[];
  /** Seconds between probes of a down relay; the last repeats (relay-health.ts). */
  probeScheduleSeconds: readonly number[];
  /** Messages waiting while every relay is down, for the relay-down log line and status. */
  held: () => number;
  clock?: (() => number) | undefined;
}

export interface SmtpReply {
  code: number;
  enhanced: string;
  response: string;
}

export interface RecipientFailure extends SmtpReply {
  recipient: string;
}

/** What one transaction sends: MAIL FROM, RCPT TOs, and the sender's RFC 3461 parameters to pass on (to a server offering DSN). */
export interface SendEnvelope {
  from: string;
  to: string[];
  dsn?: EnvelopeDsn | undefined;
  /** See smtp-session.ts TransactionEnvelope.cleanFrom. */
  cleanFrom?: number | undefined;
}

export interface SendOutcome {
  /** The relay that took the message. */
  relay: string;
  /** The relay offered DSN and got the DSN parameters: notices from here on are its job (RFC 3461 5.2). */
  dsn: boolean;
  accepted: string[];
  rejected: RecipientFailure[];
  reply: SmtpReply;
}

/** A transaction that failed as a whole: with `reply` when a server answered, without when none could be reached. */
export class SendFailure extends Error {
  constructor(
    message: string,
    readonly reply: SmtpReply | undefined,
    readonly relay: string | undefined,
    readonly rejected: RecipientFailure[] = [],
  ) {
    super(message);
  }

  get permanent(): boolean {
    return this.reply !== undefined && this.reply.code >= 500;
  }
}

export function parseReply(text: string | undefined, fallbackCode?: number): SmtpReply {
  const t = (text ?? '').trim();
  const m = /^(\d{3})[ -](?:(\d\.\d{1,3}\.\d{1,3})\s+)?/.exec(t);
  const code = m ? Number(m[1]) : (fallbackCode ?? 0);
  const enhanced = m?.[2] ?? (code >= 500 ? '5.0.0' : code >= 400 ? '4.0.0' : code >= 200 ? '2.0.0' : '');
  return { code, enhanced, response: t };
}

function recipientFailures(errs: SmtpError['rejectedErrors']): RecipientFailure[] {
  return (errs ?? []).map((e) => ({ recipient: e.recipient ?? '', ...parseReply(e.response, e.responseCode) }));
}

export type Transport = SmtpPool;
export type { BodySource };

/** Passwords never leave this process in logs or status (redact.ts); re-exported for the engine's relay pool. */
export { redactUrl };

/** A pool of SMTP sessions to one relay URL (user:pass in the URL turns AUTH on). */
export function makeTransport(urlText: string, o: TransportOptions): Transport {
  const url = new URL(urlText);
  const secure = url.protocol === 'smtps:';
  const user = decodeURIComponent(url.username);
  return new SmtpPool({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || (secure ? 465 : 25)),
    secure,
    requireTls: o.requireTls,
    name: o.clientName,
    localAddress: o.localAddress,
    auth: user ? { user, pass: decodeURIComponent(url.password) } : undefined,
    maxConnections: o.maxConnections,
    maxMessages: o.messagesPerConnection,
    timeoutMs: o.timeoutMs,
    tls: {
      rejectUnauthorized: o.verifyCertificate,
      ca: o.ca,
      servername: o.serverName ?? undefined,
      minVersion: 'TLSv1.2',
      ciphers: TLS_CIPHERS,
    },
  });
}

/** Outcome of one attempt on one relay: an answer, or no answer at all (connection-level failure). */
export type AttemptResult = { kind: 'sent'; outcome: SendOutcome } | { kind: 'unreachable'; error: Error & { code?: string | undefined } };

/**
 * One transaction on one transport. A reply (4xx/5xx) throws SendFailure;
 * a failure before any reply is returned as `unreachable` so the caller can try elsewhere.
 */
export async function sendVia(url: string, transport: Transport, envelope: SendEnvelope, openBody: () => Promise<BodySource>): Promise<AttemptResult> {
  // A body that cannot be read is our failure, not the relay's: it propagates as is.
  let bodyError: { e: unknown } | undefined;
  const open = (): Promise<BodySource> =>
    openBody().catch((e: unknown) => {
      bodyError = { e };
      throw e;
    });
  try {
    const info = await transport.send(envelope, open);
    return { kind: 'sent', outcome: { relay: url, dsn: info.dsn, accepted: info.accepted.map(String), rejected: recipientFailures(info.rejectedErrors), reply: parseReply(info.response, 250) } };
  } catch (e) {
    if (bodyError) throw bodyError.e;
    const err = e as SmtpError;
    // A failed STARTTLS or AUTH is about the session, not this message: like Postfix
    // (TLS required but not offered, smtp_sasl_auth_soft_bounce) try the next relay, then defer.
    const sessionSetup = err.code === 'ETLS' || err.code === 'EAUTH';
    if ((err.responseCode || err.response) && !sessionSetup) {
      throw new SendFailure(err.message, parseReply(err.response, err.responseCode), url, recipientFailures(err.rejectedErrors));
    }
    return { kind: 'unreachable', error: err };
  }
}

/** What the forwarder's relay worker needs of a client (a test passes its own). */
export interface RelaySender {
  send(envelope: SendEnvelope, openBody: () => Promise<BodySource>): Promise<SendOutcome>;
  readonly health: RelayHealth;
}

export class RelayClient implements RelaySender {
  private readonly transports: Array<{ relay: string; transport: Transport }>;
  readonly health: RelayHealth;

  constructor(o: RelayClientOptions, log: Logger) {
    this.transports = o.urls.map((url) => ({ relay: redactUrl(url), transport: makeTransport(url, o) }));
    const byRelay = new Map(this.transports.map((t) => [t.relay, t.transport]));
    this.health = new RelayHealth({
      relays: this.transports.map((t) => t.relay),
      probeScheduleSeconds: o.probeScheduleSeconds,
      probe: (relay) => byRelay.get(relay)!.probe(),
      held: o.held,
      unit: 'messages',
      log,
      clock: o.clock,
    });
  }

  /**
   * Sends to the first relay that is up and can be reached. `openBody` is called
   * once per attempt, because a stream cannot be replayed to the next relay.
   * Throws SendFailure with a reply for 4xx/5xx, without one when no relay could
   * be reached (then every relay is marked down).
   */
  async send(envelope: SendEnvelope, openBody: () => Promise<BodySource>): Promise<SendOutcome> {
    let lastError: Error | undefined;
    for (const { relay, transport } of this.transports) {
      if (!this.health.isUp(relay)) continue;
      const r = await sendVia(relay, transport, envelope, openBody).catch((e: unknown): AttemptResult => {
        // 421 closes the session for reasons of the node (shutting down, full): its state, as a refused connection is.
        if (e instanceof SendFailure && e.reply?.code === 421) return { kind: 'unreachable', error: Object.assign(new Error(e.message), { code: 'E421' }) };
        throw e;
      });
      if (r.kind === 'sent') return r.outcome;
      this.health.markDown(relay, r.error);
      lastError = r.error;
    }
    throw new SendFailure(`no relay reachable: ${lastError?.message ?? 'every relay is down'}`, undefined, undefined);
  }

  close(): void {
    this.health.close();
    for (const t of this.transports) t.transport.close();
  }
}
