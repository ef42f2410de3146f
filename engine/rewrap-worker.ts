/*
 * rewrap-worker.ts — takes each message off the intake queue, rewraps it, and
 * moves it to the delivery queue in one atomic batch (intake removal + delivery
 * enqueue), so a crash leaves it in exactly one of the two.
 *
 * For now the rewrap is a pass-through that only prepends our Received: header
 * (RFC 5321 4.4); the per-recipient pipeline replaces it.
 * Config: engine.hostname, engine.concurrency.
 */
import { Readable } from 'node:stream';
import type { DurableQueue, QueueRecord } from '../common/durable-queue.js';
import type { Logger } from '../common/log.js';
import type { RelayMeta } from '../common/relay-worker.js';
import type { IntakeMeta } from '../common/intake-record.js';
import { receivedHeader } from './received-header.js';

export interface DeliveryMeta extends RelayMeta {
  intakeId: string;
}

export class RewrapWorker {
  constructor(
    private readonly intake: DurableQueue<IntakeMeta>,
    private readonly delivery: DurableQueue<DeliveryMeta>,
    private readonly hostname: string,
    private readonly log: Logger,
  ) {}

  async handle(rec: QueueRecord<IntakeMeta>): Promise<void> {
    const { envelope } = rec.meta;
    const header = Buffer.from(receivedHeader(envelope, this.hostname, rec.id, new Date()));
    const original = await this.intake.openBody(rec);
    const body = Readable.from(
      (async function* () {
        yield header;
        yield* original as AsyncIterable<Buffer>;
      })(),
    );
    const prepared = await this.delivery.prepare({ meta: { envelope, pending: envelope.rcptTo, intakeId: rec.id }, body });
    const moved = await this.intake.ack(rec, prepared.ops, true);
    if (!moved) {
      await prepared.discard(); // our lease expired; whoever holds it now will move it
      return;
    }
    this.delivery.added(1);
    this.log.info({ event: 'rewrapped', queueId: prepared.record.id, intakeId: rec.id, rcpt: envelope.rcptTo.length }, 'rewrapped');
  }
}
