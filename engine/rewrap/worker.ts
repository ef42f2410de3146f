/*
 * worker.ts — takes each message off the intake queue, runs the rewrap
 * pipeline (pipeline.ts) and moves the result to the delivery queue in
 * one atomic batch: intake removal + every copy + the events (`accepted`,
 * `scheduled`, `suppressed`, or `rejected`) + recipient database updates +
 * the copy index (engine/feedback/copy-index.ts), so
 * a crash leaves the message in exactly one of the two queues and the event
 * feed never shows an outcome that did not happen (EventLog.prepare/settle).
 *
 * Copies of a scheduled message are enqueued with `due` = the send time: they
 * wait in LevelDB, across restarts, and the delivery loop's timer wakes then.
 * Config: engine.* and accounts[].engine (see settings.ts).
 * Side effects: reads intake bodies; writes delivery bodies (inline or blobs);
 * `onIntake` (the message archive, the forwarder log) per message taken up.
 */
import type { DurableQueue, HandOver, Prepared, QueueRecord } from '../../common/durable-queue.js';
import { newQueueId } from '../../common/durable-queue.js';
import type { EventInput } from '../../common/events.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import type { Logger } from '../../common/log.js';
import { getHeader } from '../../common/mime-header.js';
import { bufferSource, fileSource, type BodySource } from './body-source.js';
import type { CopyDsn, DeliveryMeta } from '../delivery/delivery-record.js';
import { prepareNotice } from '../delivery/dsn-notices.js';
import type { EventLog } from '../events/event-log.js';
import { scanMime, walkParts } from './mime-scan.js';
import { rewrap } from './pipeline.js';
import { fallbackMessageId } from './steps/missing-headers.js';
import { MessageContext, type Copy, type RewrapServices, type RewrapSettings } from './context.js';

/**
 * A batch of copies commits when it holds this many copies or this many bytes of
 * inline bodies, whichever comes first: the memory a message takes is bounded by
 * the batch, not by its recipient count.
 */
export const BATCH_MAX_COPIES = 100;
export const BATCH_MAX_BYTES = 8 * 1024 * 1024;

/** Our lease on the intake record expired mid-rewrap: whoever holds it now carries on. */
class LeaseLost extends Error {}

export interface RewrapWorkerOptions {
  intake: DurableQueue<IntakeMeta>;
  delivery: DurableQueue<DeliveryMeta>;
  events: EventLog;
  services: RewrapServices;
  /** Settings by account id. */
  settings: ReadonlyMap<string, RewrapSettings>;
  log: Logger;
  /** Default Date.now. */
  clock?: () => number;
  /**
   * Told of each message as the rewrap takes it up, before its copies are made (the message
   * archive keeps its source, the forwarder log notes its client); a failure is logged, never
   * holds up the message. Also on a retry after a crash: a repeat must be harmless.
   */
  onIntake?: (rec: QueueRecord<IntakeMeta>, o: { messageId: string | undefined; source: BodySource }) => Promise<void>;
}

/**
 * The RFC 3461 parameters a copy for `recipient` carries, or undefined when the
 * message does not report to its sender: it reports when a forwarder relayed it
 * or its client gave any DSN parameter (see engine/delivery/dsn-notices.ts).
 */
export function copyDsn(meta: IntakeMeta, recipient: string): CopyDsn | undefined {
  const d = meta.envelope.dsn;
  if (meta.envelope.mailFrom === '' || (!meta.forwarded && !d)) return undefined;
  const r = d?.rcpt?.[recipient];
  return { ...(r?.notify ? { notify: r.notify } : {}), ...(r?.orcpt ? { orcpt: r.orcpt } : {}), ...(d?.ret ? { ret: d.ret } : {}), ...(d?.envid ? { envid: d.envid } : {}) };
}

export class RewrapWorker {
  private readonly clock: () => number;

  constructor(private readonly o: RewrapWorkerOptions) {
    this.clock = o.clock ?? Date.now;
  }

  private async source(rec: QueueRecord<IntakeMeta>): Promise<BodySource> {
    if (rec.body.kind === 'file') return fileSource(this.o.intake.store, rec.body.name, rec.body.size);
    return bufferSource(await this.o.intake.readBody(rec));
  }

  async handle(rec: QueueRecord<IntakeMeta>): Promise<void> {
    const { envelope, account } = rec.meta;
    const log = this.o.log.child({ queueId: rec.id, account });
    const settings = this.o.settings.get(account);
    const now = this.clock();
    const source = await this.source(rec);
    const mime = await scanMime(source.stream(0, source.size), settings?.mimeLimits, source.size);
    const messageId = getHeader(mime.headers, 'message-id') ?? (settings ? fallbackMessageId(rec.id, settings.hostname) : undefined);
    const base = { account, messageId, sender: envelope.mailFrom };
    if (this.o.onIntake) await this.o.onIntake(rec, { messageId, source }).catch((err: unknown) => log.warn({ err }, 'intake observer failed (archive or forwarder log); the message goes on'));
    if (!settings) {
      await this.finish(rec, [], envelope.rcptTo.map((r) => ({ ...base, type: 'rejected', queueId: rec.id, recipient: r, reason: `unknown account "${account}"` })), [], log);
      return;
    }
    const msg = new MessageContext({ intakeId: rec.id, envelope, source, mime, parts: walkParts(mime), settings, services: this.o.services, now, noDoubleBrace: rec.meta.noDoubleBrace === true });
    // Copies are committed in batches as they are made (see the header): `held` is the intake
    // record as last committed, its meta.resumeAt the position of the next recipient to rewrap.
    let held = rec;
    let batch: Prepared<DeliveryMeta>[] = [];
    let batchBytes = 0;
    const events: EventInput[] = [];
    let copies = 0;
    let suppressed = 0;
    /** The intake body went over to the copy (handOver below): the intake record leaves without it. */
    let handedOver = false;
    const flush = async (position: number): Promise<void> => {
      const upd = this.o.intake.updateMetaOps(held, { ...held.meta, resumeAt: position });
      const ev = this.o.events.prepare(events.splice(0));
      const ops = [...batch.flatMap((p) => p.ops), ...ev.ops, ...msg.extraOps.splice(0), ...upd.ops];
      const committed = batch;
      batch = [];
      batchBytes = 0;
      try {
        if (!this.o.intake.holds(held)) throw new LeaseLost();
        await this.o.intake.store.commit(ops, { sync: true });
      } catch (e) {
        this.o.events.abandon(ev);
        await Promise.all(committed.map((p) => p.discard()));
        throw e;
      }
      this.o.events.settle(ev);
      this.o.delivery.added(committed.length);
      held = upd.rec;
    };
    // Each copy carries its own recipient's DSN parameters (copyDsn), not the whole envelope's.
    const { dsn: _all, ...copyEnvelope } = envelope;
    let result;
    try {
      result = await rewrap(msg, {
        newId: () => newQueueId(now),
        startAt: rec.meta.resumeAt ?? 0,
        onCopy: async (copy) => {
          const c = msg.controls;
          const dsn = copyDsn(rec.meta, copy.recipient);
          const meta: DeliveryMeta = {
            envelope: { ...copyEnvelope, mailFrom: copy.mailFrom, rcptTo: [copy.recipient] },
            pending: [copy.recipient],
            intakeId: rec.id,
            account,
            recipient: copy.recipient,
            sender: envelope.mailFrom,
            messageId,
            stream: c.stream,
            tag: c.tag,
            metadata: Object.keys(c.metadata).length ? c.metadata : undefined,
            ...(dsn ? { dsn } : {}),
            // The copy is its header and then the intake's bytes unchanged, which the listener found clean.
            ...(copy.shared && rec.meta.cleanLines ? { cleanFrom: copy.shared.head.length } : {}),
          };
          const shared = this.handOver(rec, copy);
          const p = await this.o.delivery.prepare(shared ? { id: copy.queueId, meta, body: shared.head, due: msg.due, tail: shared.tail } : { id: copy.queueId, meta, body: copy.body!, due: msg.due });
          if (shared) {
            copy.body?.destroy();
            handedOver = true;
          }
          batch.push(p);
          batchBytes += p.record.body.kind === 'inline' ? p.record.body.size : 0;
          copies++;
          // What comes back about this copy (bounces, complaints, clicks) is attributed through this record.
          msg.extraOps.push(...this.o.services.copies.putOps({ queueId: copy.queueId, account, recipient: copy.recipient, sender: envelope.mailFrom, messageId, list: c.list, stream: c.stream, tag: c.tag, metadata: meta.metadata, due: msg.due }));
          const ev = { ...base, queueId: copy.queueId, intakeId: rec.id, stream: c.stream, recipient: copy.recipient, tag: c.tag, metadata: meta.metadata };
          events.push({ ...ev, type: 'accepted' });
          if (msg.due > now) events.push({ ...ev, type: 'scheduled', nextAttemptAt: new Date(msg.due).toISOString() });
          if (batch.length >= BATCH_MAX_COPIES || batchBytes >= BATCH_MAX_BYTES) await flush(copy.position + 1);
        },
        onSuppressed: (s) => {
          suppressed++;
          events.push({ ...base, type: 'suppressed', queueId: rec.id, recipient: s.recipient, tag: msg.controls.tag, reason: s.reason });
        },
      });
    } catch (e) {
      await Promise.all(batch.map((p) => p.discard()));
      if (!(e instanceof LeaseLost)) throw e;
      log.warn({ event: 'lease-lost' }, 'lease expired during rewrap; left to the new holder');
      return;
    }
    if (result.kind === 'rejected') {
      await Promise.all(batch.map((p) => p.discard()));
      log.warn({ event: 'rejected', step: result.step, reason: result.reason }, 'message rejected by the rewrap');
      // Recipients whose copies an earlier batch committed keep them; the rest are rejected.
      const rest = envelope.rcptTo.slice(held.meta.resumeAt ?? 0);
      const rejected: EventInput[] = rest.map((r) => ({ ...base, type: 'rejected', queueId: rec.id, recipient: r, tag: msg.controls.tag, reason: result.reason }));
      await this.finish(held, [], rejected, [], log);
      return;
    }
    await this.finish(held, batch, events, msg.extraOps, log, handedOver);
    log.info({ event: 'rewrapped', copies, suppressed, resumedAt: rec.meta.resumeAt, due: msg.due > now ? new Date(msg.due).toISOString() : undefined }, 'rewrapped');
  }

  /** The `failed` events of a message the rewrap gave up on (common/dead-letter.ts): one per recipient without a copy. */
  failedEvents(rec: QueueRecord<IntakeMeta>, reason: string): EventInput[] {
    const { envelope, account } = rec.meta;
    return envelope.rcptTo.slice(rec.meta.resumeAt ?? 0).map((r) => ({ type: 'failed', account, queueId: rec.id, sender: envelope.mailFrom, recipient: r, reason }));
  }

  /**
   * The DSN for the recipients of a message the rewrap gave up on (dead letter), when its
   * sender asked for one (engine/delivery/dsn-notices.ts); prepared on the delivery queue.
   */
  async failedNotice(rec: QueueRecord<IntakeMeta>, reason: string): Promise<Prepared<DeliveryMeta> | undefined> {
    const { envelope, account } = rec.meta;
    const settings = this.o.settings.get(account);
    const rest = envelope.rcptTo.slice(rec.meta.resumeAt ?? 0);
    const recipients = rest.flatMap((r) => {
      const dsn = copyDsn(rec.meta, r);
      return dsn ? [{ recipient: r, dsn }] : [];
    });
    if (!settings || recipients.length === 0) return undefined;
    const intake = this.o.intake;
    return prepareNotice(
      this.o.delivery,
      settings.hostname,
      {
        action: 'failed',
        account,
        intakeId: rec.id,
        sender: envelope.mailFrom,
        arrivalDate: new Date(envelope.receivedAt || rec.enqueuedAt),
        recipients,
        reason,
        original: { size: rec.body.size, open: () => intake.openBody(rec), read: () => intake.readBody(rec) },
      },
      this.clock(),
    );
  }

  /**
   * The copy as its head and the intake body's bytes from an offset, when it can refer to them
   * instead of holding a copy (durable-queue.ts, handed-over bodies): its body is unchanged
   * (Copy.shared) and this is the message's only copy, so the intake body's key or file has one
   * owner when the intake record goes. It was one of the two body writes per message the hosted
   * node made (issue #17).
   */
  private handOver(rec: QueueRecord<IntakeMeta>, copy: Copy): { head: Buffer; tail: HandOver } | undefined {
    const s = copy.shared;
    if (!s || rec.meta.envelope.rcptTo.length !== 1) return undefined;
    return { head: s.head, tail: this.o.intake.handOver(rec, s.tailFrom) };
  }

  /** One synced batch: intake removal (its body kept when a copy took it over), copies, events, extra ops. */
  private async finish(rec: QueueRecord<IntakeMeta>, prepared: Prepared<DeliveryMeta>[], inputs: EventInput[], extraOps: import('../../common/store.js').BatchOp[], log: Logger, keepBody = false): Promise<void> {
    const ev = this.o.events.prepare(inputs);
    let moved: boolean;
    try {
      moved = await this.o.intake.ack(rec, [...prepared.flatMap((p) => p.ops), ...ev.ops, ...extraOps], true, keepBody);
    } catch (e) {
      this.o.events.abandon(ev);
      await Promise.all(prepared.map((p) => p.discard()));
      throw e;
    }
    if (!moved) {
      this.o.events.abandon(ev);
      await Promise.all(prepared.map((p) => p.discard())); // our lease expired; whoever holds it now will move it
      log.warn({ event: 'lease-lost' }, 'lease expired during rewrap; left to the new holder');
      return;
    }
    this.o.events.settle(ev);
    this.o.delivery.added(prepared.length);
  }
}
