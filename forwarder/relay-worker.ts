/*
 * relay-worker.ts — the forwarder's relay trip: hands spooled messages to the
 * hosted listener (the engine delivers through its own worker,
 * engine/delivery/delivery-worker.ts).
 *
 * Per message, the outcome is one of a closed set, decided in `attempt()`/`decide()`:
 *   delivered  every pending recipient accepted (2xx)       → removed from spool
 *   partial    some accepted, others deferred (4xx)        → retried for the rest
 *   deferred   4xx from a reachable listener                → retried on the schedule
 *   held       no listener reachable (refused, timeout, TLS) → given back as it was:
 *              no attempt counted, no backoff; the relay is marked down
 *              (common/relay-health.ts) and `holdMs()` keeps the loop from
 *              leasing until a probe finds a listener up again
 *   failed     5xx, or older than retry.maxAgeSeconds      → removed, logged as failed
 * Recipients refused with 5xx while others were accepted are failed
 * individually (Postfix behaviour: one bad address does not hold the others).
 * Held messages go back due at their arrival time, so when the relay returns
 * they leave oldest first, ahead of mail that arrived during the outage, at
 * the loop's rate cap. A message past retry.maxAgeSeconds is not held but
 * failed (its DSN waits in the spool for the same listener).
 *
 * The stage decides what a failure means for the sender through `onFailed`
 * (the forwarder writes a DSN to the sender).
 *
 * Config: forwarder.retry (scheduleSeconds, maxAgeSeconds); the probe schedule
 * is forwarder.relay.probeScheduleSeconds (in the client's RelayHealth).
 * Side effects: SMTP connections upstream; queue updates.
 */
import type { DurableQueue, QueueRecord } from '../common/durable-queue.js';
import type { Logger } from '../common/log.js';
import { redactUrlsIn } from '../common/redact.js';
import { nextRetry, type RetryPolicy } from '../common/retry-schedule.js';
import { SendFailure, type BodySource, type RecipientFailure, type RelaySender, type SmtpReply } from '../common/smtp-client.js';
import type { RelayMeta } from '../common/relay-meta.js';

export type RelayOutcome =
  | { kind: 'delivered'; relay: string; reply: SmtpReply; dsn: boolean }
  | { kind: 'partial'; relay: string; reply: SmtpReply; retry: string[]; failed: RecipientFailure[]; at: number; dsn: boolean }
  | { kind: 'deferred'; reply?: SmtpReply | undefined; relay?: string | undefined; at: number; reason: string }
  | { kind: 'held'; reason: string }
  | { kind: 'failed'; reply?: SmtpReply | undefined; failed: RecipientFailure[]; reason: string };

/** While every relay is down, the loop looks again this often (a probe's success is seen within it). */
const HOLD_RECHECK_MS = 100;

export interface RelayCounters {
  /** Messages taken by the next hop (for at least one recipient). */
  delivered: number;
  /** Attempts that ended in a retry. */
  deferred: number;
  /** Recipients refused for good or expired. */
  failed: number;
  /** Messages given back uncharged because no relay was reachable. */
  held: number;
}

export interface RelayWorkerOptions<M> {
  spool: DurableQueue<M>;
  client: RelaySender;
  retry: RetryPolicy;
  log: Logger;
  /** 5xx or expiry: what it means for the sender (the forwarder spools a DSN). */
  onFailed?: ((rec: QueueRecord<M>, failed: RecipientFailure[], reason: string) => Promise<void>) | undefined;
  /**
   * Recipients the next hop took, before the spool forgets them (the forwarder's NOTIFY=SUCCESS notices);
   * `dsn`: the next hop offered DSN and got the parameters, so success notices are its job.
   */
  onRelayed?: ((rec: QueueRecord<M>, accepted: string[], relay: string, reply: SmtpReply, dsn: boolean) => Promise<void>) | undefined;
  clock?: (() => number) | undefined;
  /** The bytes to relay; the forwarder stamps its spool id here (spool-id.ts). Default: the spooled body. */
  openBody?: ((rec: QueueRecord<M>) => Promise<BodySource>) | undefined;
}

export class RelayWorker<M extends RelayMeta> {
  readonly counters: RelayCounters = { delivered: 0, deferred: 0, failed: 0, held: 0 };
  private readonly spool: DurableQueue<M>;
  private readonly client: RelaySender;
  private readonly retry: RetryPolicy;
  private readonly log: Logger;
  private readonly onFailed: (rec: QueueRecord<M>, failed: RecipientFailure[], reason: string) => Promise<void>;
  private readonly onRelayed: (rec: QueueRecord<M>, accepted: string[], relay: string, reply: SmtpReply, dsn: boolean) => Promise<void>;
  private readonly now: () => number;
  private readonly openBody: (rec: QueueRecord<M>) => Promise<BodySource>;

  constructor(o: RelayWorkerOptions<M>) {
    this.spool = o.spool;
    this.client = o.client;
    this.retry = o.retry;
    this.log = o.log;
    this.onFailed = o.onFailed ?? (async () => undefined);
    this.onRelayed = o.onRelayed ?? (async () => undefined);
    this.now = o.clock ?? Date.now;
    this.openBody = o.openBody ?? ((rec) => o.spool.sendableBody(rec));
  }

  /** WorkerLoop's gate: milliseconds to wait before leasing, > 0 while every relay is down. */
  holdMs(): number {
    return this.client.health.allDown ? HOLD_RECHECK_MS : 0;
  }

  /** Relays one leased message and records the outcome in the spool. */
  async handle(rec: QueueRecord<M>): Promise<void> {
    const outcome = await this.attempt(rec);
    await this.apply(rec, outcome);
  }

  private async attempt(rec: QueueRecord<M>): Promise<RelayOutcome> {
    const { envelope, pending } = rec.meta;
    try {
      // The application's RFC 3461 parameters go on to the listener, which reports from there on.
      const sent = await this.client.send({ from: envelope.mailFrom, to: pending, dsn: envelope.dsn }, () => this.openBody(rec));
      return this.decide(rec, sent.rejected, sent.relay, sent.reply, sent.dsn);
    } catch (e) {
      if (!(e instanceof SendFailure)) throw e;
      // Logged and stored as lastError: a connection error that quotes a URL loses its password (redact.ts).
      e.message = redactUrlsIn(e.message);
      if (e.reply === undefined) {
        // No listener reachable: the relay's state, not this message's (unless it is past its age).
        const o = this.retryOrGiveUp(rec, undefined, undefined, e.message);
        return o.kind === 'deferred' ? { kind: 'held', reason: e.message } : o;
      }
      // Every recipient refused at RCPT: decide per recipient (5xx fail, 4xx retry), as on partial acceptance.
      if (e.rejected.length > 0 && e.relay && e.reply && e.rejected.every((r) => r.recipient !== '')) return this.decide(rec, e.rejected, e.relay, e.reply, false);
      if (e.permanent) {
        return { kind: 'failed', reply: e.reply, reason: e.message, failed: pending.map((r) => ({ recipient: r, ...e.reply! })) };
      }
      return this.retryOrGiveUp(rec, e.reply, e.relay, e.message);
    }
  }

  private decide(rec: QueueRecord<M>, rejected: RecipientFailure[], relay: string, reply: SmtpReply, dsn: boolean): RelayOutcome {
    if (rejected.length === 0) return { kind: 'delivered', relay, reply, dsn };
    const failed = rejected.filter((r) => r.code >= 500);
    const retry = rejected.filter((r) => r.code < 500).map((r) => r.recipient);
    if (retry.length === 0) return { kind: 'partial', relay, reply, retry, failed, at: 0, dsn };
    const d = nextRetry(this.retry, rec.attempts, rec.enqueuedAt, this.now());
    if (d.kind === 'give-up') {
      const timedOut = rejected.filter((r) => r.code < 500);
      return { kind: 'partial', relay, reply, retry: [], failed: [...failed, ...timedOut], at: 0, dsn };
    }
    return { kind: 'partial', relay, reply, retry, failed, at: d.at, dsn };
  }

  private retryOrGiveUp(rec: QueueRecord<M>, reply: SmtpReply | undefined, relay: string | undefined, reason: string): RelayOutcome {
    const d = nextRetry(this.retry, rec.attempts, rec.enqueuedAt, this.now());
    if (d.kind === 'give-up') {
      const r = reply ?? { code: 421, enhanced: '4.4.1', response: reason };
      return { kind: 'failed', reply, reason: `${d.reason}; last error: ${reason}`, failed: rec.meta.pending.map((x) => ({ recipient: x, ...r })) };
    }
    return { kind: 'deferred', reply, relay, at: d.at, reason };
  }

  private async apply(rec: QueueRecord<M>, o: RelayOutcome): Promise<void> {
    const log = this.log.child({ queueId: rec.id });
    switch (o.kind) {
      case 'delivered':
        await this.onRelayed(rec, rec.meta.pending, o.relay, o.reply, o.dsn);
        await this.spool.ack(rec);
        this.counters.delivered++;
        log.info({ event: 'relayed', relay: o.relay, response: o.reply.response, rcpt: rec.meta.pending.length }, 'relayed');
        return;
      case 'partial': {
        this.counters.failed += o.failed.length;
        for (const f of o.failed) log.warn({ event: 'failed', recipient: f.recipient, code: f.code, enhanced: f.enhanced, response: f.response }, 'recipient refused');
        if (o.failed.length > 0) await this.onFailed(rec, o.failed, 'recipient refused');
        const accepted = rec.meta.pending.filter((r) => !o.retry.includes(r) && !o.failed.some((f) => f.recipient === r));
        if (accepted.length > 0) await this.onRelayed(rec, accepted, o.relay, o.reply, o.dsn);
        if (o.retry.length === 0) {
          await this.spool.ack(rec);
          if (o.failed.length < rec.meta.pending.length) this.counters.delivered++; // someone got it
          return;
        }
        this.counters.deferred++;
        const lastError = { ...o.reply, at: this.now(), relay: o.relay };
        await this.spool.nack(rec, o.at, { ...rec.meta, pending: o.retry, lastError });
        log.info({ event: 'deferred', recipients: o.retry, next: new Date(o.at).toISOString() }, 'some recipients deferred');
        return;
      }
      case 'deferred': {
        this.counters.deferred++;
        const err = o.reply ?? { code: 0, enhanced: '', response: o.reason };
        await this.spool.nack(rec, o.at, { ...rec.meta, lastError: { ...err, at: this.now(), relay: o.relay } });
        log.info({ event: 'deferred', reason: o.reason, relay: o.relay, attempts: rec.attempts, next: new Date(o.at).toISOString() }, 'deferred');
        return;
      }
      case 'held':
        // Due at its arrival time: when the relay returns, the oldest leave first.
        await this.spool.release(rec, rec.enqueuedAt);
        this.counters.held++;
        log.debug({ event: 'held', reason: o.reason, attempts: rec.attempts - 1 }, 'held: no relay reachable');
        return;
      case 'failed':
        this.counters.failed += o.failed.length; // counted per recipient, as in 'partial'
        await this.onFailed(rec, o.failed, o.reason);
        await this.spool.ack(rec);
        log.warn({ event: 'failed', reason: o.reason, code: o.reply?.code, recipients: o.failed.map((f) => f.recipient) }, 'relay failed permanently');
        return;
    }
  }
}
