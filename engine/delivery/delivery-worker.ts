/*
 * delivery-worker.ts — one attempt for one copy, and its outcome recorded
 * atomically: the queue change, its event and (for a hard bounce) the
 * suppression entry commit in one LevelDB batch, so the event feed never shows
 * an outcome that did not happen and never misses one that did.
 *
 * The steps, in order, each returning early (Postal's dequeuer shape):
 *   expired     older than delivery.maxAgeSeconds → `expired` event, removed
 *   suppressed  (minimal check, see below) → `suppressed` event, removed
 *   attempt     relay pool → classify (classify.ts)
 *   delivered   2xx → `delivered` event with the relay's reply, removed
 *   deferred    4xx → `deferred` event with the reply, the back-pressure
 *               rule and the next attempt time; retried on
 *               delivery.retryScheduleSeconds, or `expired` past maxAge
 *   held        no relay reachable (relay-pool.ts marks it down) → the copy
 *               goes back as it was: no try charged, no event, due at its
 *               arrival so held copies leave oldest first when a relay is up
 *   bounced     5xx → `bounced` event, class hard|soft; hard → suppressed
 *   failed      the attempt threw (a bug, a corrupt record): back after a
 *               backoff; after engine.maxAttempts such failures the copy
 *               moves to the failed records with a `failed` event
 *               (common/dead-letter.ts; 4xx retries are not failures)
 *
 * A copy that reports to its sender (dsn-notices.ts) gets its DSN in the same
 * batch as the outcome: `failed` with bounced/expired/failed, `relayed` with
 * delivered, `delayed` once with the first deferral past the warning time.
 *
 * Standards: RFC 5321 4.2 and 4.5.4 (retry), RFC 3463, RFC 3461/3464 (DSNs).
 * Config: delivery.retryScheduleSeconds ([60,300,900,1800,3600] then hourly),
 * delivery.maxAgeSeconds (3 days), delivery.backPressure, engine.hostname and
 * engine.dsnDelayWarningSeconds (DSNs).
 * Side effects: SMTP via the relay pool; LevelDB batches (unsynced: on a crash
 * state and events move together, the copy is simply tried again).
 */
import { domainOf } from '../../common/address.js';
import type { BackPressureRule } from '../../common/config.js';
import { DeadLetter, joinPrepared, type AttemptLimit } from '../../common/dead-letter.js';
import type { DsnAction } from '../../common/dsn.js';
import type { DurableQueue, Prepared, QueueRecord } from '../../common/durable-queue.js';
import type { EventInput, EventType } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import { nextRetry, type RetryPolicy } from '../../common/retry-schedule.js';
import { SendFailure, type SmtpReply } from '../../common/smtp-client.js';
import type { BatchOp } from '../../common/store.js';
import type { DeliveryMeta } from './delivery-record.js';
import { copyNotice, noticeOps, prepareNotice, wantsCopyNotice } from './dsn-notices.js';
import type { EventLog } from '../events/event-log.js';
import type { SuppressionList } from '../suppression.js';
import { classifyFailure, classifySent, type AttemptOutcome, type BackPressureRules } from './classify.js';
import type { RelayPool } from './relay-pool.js';
import { shapingFor } from './shaping.js';
import type { SourceAddresses } from './source-addresses.js';
import type { DeliveryConfig } from '../../common/config.js';

type Rec = QueueRecord<DeliveryMeta>;

export type OutcomeKind = Extract<EventType, 'delivered' | 'deferred' | 'bounced' | 'expired' | 'suppressed' | 'failed'>;

export interface DeliveryDeps {
  queue: DurableQueue<DeliveryMeta>;
  events: EventLog;
  suppression: SuppressionList;
  pool: RelayPool;
  sources: SourceAddresses;
  rules: BackPressureRules;
  config: DeliveryConfig;
  log: Logger;
  /** Called once per recorded outcome (metrics, drain-rate estimate). */
  onOutcome?: (kind: OutcomeKind, rec: Rec) => void;
  /** Called when a copy is given back uncharged because no relay was up. */
  onHeld?: (rec: Rec) => void;
  /** DSNs to senders (dsn-notices.ts): Reporting-MTA name, and the deferral age for a "delayed" one (0 = none). */
  dsn?: { hostname: string; delayWarningMs: number } | undefined;
  /** Bounded attempts for a copy whose attempt throws; default 5 attempts, 10 s, 60 s, 300 s, 900 s apart. */
  attemptLimit?: AttemptLimit;
  clock?: () => number;
}

/** The DSN action each final outcome reports (suppressed copies are reported by events only). */
const NOTICE_OF: Partial<Record<OutcomeKind, DsnAction>> = { bounced: 'failed', expired: 'failed', delivered: 'relayed' };

const DEFAULT_ATTEMPT_LIMIT: AttemptLimit = { maxAttempts: 5, backoffMs: [10_000, 60_000, 300_000, 900_000] };

export class DeliveryWorker {
  private readonly now: () => number;
  private readonly retry: RetryPolicy;
  private readonly dead: DeadLetter<DeliveryMeta>;

  constructor(private readonly d: DeliveryDeps) {
    this.now = d.clock ?? Date.now;
    this.retry = { scheduleSeconds: d.config.retryScheduleSeconds, maxAgeSeconds: d.config.maxAgeSeconds };
    this.dead = new DeadLetter({
      queue: d.queue,
      limit: d.attemptLimit ?? DEFAULT_ATTEMPT_LIMIT,
      countLeases: false, // leases include the retries after 4xx replies
      failedEvents: async (rec, reason) => {
        const notice = noticeOps(d.queue, await this.notice(rec, 'failed', { reason }));
        const ev = d.events.prepare([{ ...this.base(rec), type: 'failed', reason }]);
        return joinPrepared({ ops: ev.ops, settle: () => d.events.settle(ev), abandon: () => d.events.abandon(ev) }, notice);
      },
      log: d.log,
      clock: this.now,
      onFailed: (rec) => d.onOutcome?.('failed', rec),
    });
  }

  /** What every event about this copy carries. */
  private base(rec: Rec): Omit<EventInput, 'type'> {
    const m = rec.meta;
    return { account: m.account, messageId: m.messageId, queueId: rec.id, intakeId: m.intakeId, stream: m.stream, recipient: m.recipient, sender: m.sender, tag: m.tag, metadata: m.metadata };
  }

  /** The DSN about this copy for this action, prepared (not committed), if its sender asked for one. */
  private async notice(rec: Rec, action: DsnAction, what: { reason: string; reply?: SmtpReply | undefined; relay?: string | undefined }): Promise<Prepared<DeliveryMeta> | undefined> {
    if (!this.d.dsn || !wantsCopyNotice(rec.meta, action)) return undefined;
    const p = await prepareNotice(this.d.queue, this.d.dsn.hostname, copyNotice(this.d.queue, rec, action, what), this.now());
    if (p) this.d.log.info({ event: 'dsn', queueId: rec.id, action, dsnId: p.record.id, to: rec.meta.sender }, 'DSN queued for the sender');
    return p;
  }

  /** Handles one leased copy; returns the back-pressure rule its reply matched, for the scheduler. */
  async handle(rec: Rec): Promise<BackPressureRule | undefined> {
    try {
      return await this.handleOnce(rec);
    } catch (err) {
      await this.dead.crashed(rec, err);
      return undefined;
    }
  }

  private async handleOnce(rec: Rec): Promise<BackPressureRule | undefined> {
    const now = this.now();
    const ageMs = now - rec.enqueuedAt;
    if (ageMs >= this.retry.maxAgeSeconds * 1000) {
      await this.finish(rec, 'expired', { reason: this.expiryReason(ageMs, rec.meta.lastError) });
      return undefined;
    }
    // Rewrap already refused suppressed recipients; this second look catches copies
    // that were parked (scheduled, deferred) when the address got suppressed since.
    // One point read per attempt (engine/suppression.ts).
    const sup = await this.d.suppression.check(rec.meta.account, rec.meta.recipient, { stream: rec.meta.stream });
    if (sup) {
      await this.finish(rec, 'suppressed', { reason: `on the suppression list (${sup.reason}${sup.detail ? `: ${sup.detail}` : ''})` });
      return undefined;
    }
    const outcome = await this.attempt(rec);
    return this.record(rec, outcome);
  }

  private async attempt(rec: Rec): Promise<AttemptOutcome> {
    const m = rec.meta;
    const shaping = shapingFor(this.d.config.shaping, domainOf(m.recipient));
    const defaultPool = shaping.poolKey === 'default';
    try {
      const sent = await this.d.pool.send({ from: m.envelope.mailFrom, to: [m.recipient], cleanFrom: m.cleanFrom }, () => this.d.queue.sendableBody(rec), {
        localAddress: this.d.sources.pick(m.account, m.stream),
        poolKey: shaping.poolKey,
        maxConnections: defaultPool ? this.d.config.maxConnections : shaping.params.maxConnections,
        messagesPerConnection: shaping.params.messagesPerConnection,
      });
      return classifySent(sent);
    } catch (e) {
      if (!(e instanceof SendFailure)) throw e;
      return classifyFailure(e);
    }
  }

  private async record(rec: Rec, o: AttemptOutcome): Promise<BackPressureRule | undefined> {
    const tries = (rec.meta.tries ?? 0) + 1;
    const log = this.d.log.child({ queueId: rec.id, account: rec.meta.account });
    switch (o.kind) {
      case 'delivered':
        await this.finish(rec, 'delivered', { smtp: o.reply, relay: o.relay });
        log.info({ event: 'delivered', recipient: rec.meta.recipient, relay: o.relay, response: o.reply.response, tries }, 'delivered');
        return undefined;
      case 'held':
        if (!(await this.d.queue.release(rec, rec.enqueuedAt))) return undefined;
        this.d.onHeld?.(rec);
        log.debug({ event: 'held', recipient: rec.meta.recipient, reason: o.reason, tries: tries - 1 }, 'held: no relay reachable');
        return undefined;
      case 'bounced': {
        const extra: BatchOp[] = [];
        if (o.bounceClass === 'hard') {
          extra.push(...(await this.d.suppression.addOps(rec.meta.account, [{ address: rec.meta.recipient, scope: '*', reason: 'hard-bounce', detail: o.reply.response }])));
        }
        await this.finish(rec, 'bounced', { smtp: o.reply, relay: o.relay, bounce: { class: o.bounceClass, status: o.reply.enhanced, source: 'smtp' } }, extra);
        log.warn({ event: 'bounced', recipient: rec.meta.recipient, class: o.bounceClass, response: o.reply.response }, 'bounced');
        return undefined;
      }
      case 'deferred': {
        const rule = this.d.rules.match(o.reply);
        const now = this.now();
        const d = nextRetry(this.retry, tries, rec.enqueuedAt, now);
        const lastError = { ...(o.reply ?? { code: 0, enhanced: '', response: o.reason }), at: now, relay: o.relay };
        if (d.kind === 'give-up') {
          await this.finish(rec, 'expired', { reason: this.expiryReason(now - rec.enqueuedAt, lastError), smtp: o.reply, relay: o.relay });
          log.warn({ event: 'expired', recipient: rec.meta.recipient, tries }, 'expired');
          return rule;
        }
        // A suspension holds the copy at least until the destination reopens.
        const at = rule?.action === 'suspend' ? Math.max(d.at, now + rule.seconds * 1000) : d.at;
        if (!this.d.queue.holds(rec)) return rule; // lease expired: whoever holds the copy now records it
        // RFC 3461 NOTIFY=DELAY: once, with the first deferral past the warning time.
        const warnMs = this.d.dsn?.delayWarningMs ?? 0;
        const warn = warnMs > 0 && !rec.meta.delayNotified && now - rec.enqueuedAt >= warnMs;
        const notice = warn ? await this.notice(rec, 'delayed', { reason: o.reason, reply: o.reply, relay: o.relay }) : undefined;
        const ev = this.d.events.prepare([
          { ...this.base(rec), type: 'deferred', smtp: o.reply, relay: o.relay, reason: o.reason, rule: rule?.name, nextAttemptAt: new Date(at).toISOString() },
        ]);
        const meta: DeliveryMeta = { ...rec.meta, tries, lastError, ...(warn ? { delayNotified: true } : {}) };
        try {
          await this.d.queue.store.commit([...this.d.queue.nackOps(rec, at, meta), ...ev.ops, ...(notice?.ops ?? [])], { sync: Boolean(notice) });
        } catch (e) {
          this.d.events.abandon(ev);
          await notice?.discard();
          throw e;
        }
        this.d.queue.nacked(rec);
        this.d.events.settle(ev);
        if (notice) this.d.queue.added(1);
        this.d.onOutcome?.('deferred', rec);
        log.info({ event: 'deferred', recipient: rec.meta.recipient, reason: o.reason, rule: rule?.name, tries, next: new Date(at).toISOString() }, 'deferred');
        return rule;
      }
    }
  }

  private expiryReason(ageMs: number, last: (SmtpReply & { at: number }) | undefined): string {
    const base = `undelivered after ${Math.round(ageMs / 1000)} s (delivery.maxAgeSeconds ${this.retry.maxAgeSeconds})`;
    return last ? `${base}; last reply: ${last.response}` : base;
  }

  /** Removes the copy with its final event (and extra ops) in one batch. */
  private async finish(rec: Rec, type: OutcomeKind, detail: Omit<EventInput, 'type' | 'account'>, extra: BatchOp[] = []): Promise<void> {
    const action = NOTICE_OF[type];
    const notice = action && this.d.queue.holds(rec) ? await this.notice(rec, action, { reason: detail.reason ?? detail.smtp?.response ?? type, reply: detail.smtp, relay: detail.relay }) : undefined;
    const ev = this.d.events.prepare([{ ...this.base(rec), ...detail, type }]);
    let done: boolean;
    try {
      // Synced when it carries a DSN: a notice is a new message, acknowledged like one.
      done = await this.d.queue.ack(rec, [...ev.ops, ...extra, ...(notice?.ops ?? [])], Boolean(notice));
    } catch (e) {
      this.d.events.abandon(ev);
      await notice?.discard();
      throw e;
    }
    if (!done) {
      // Our lease expired and someone else holds the copy: they record its outcome.
      this.d.events.abandon(ev);
      await notice?.discard();
      return;
    }
    this.d.events.settle(ev);
    if (notice) this.d.queue.added(1);
    this.d.onOutcome?.(type, rec);
  }
}
