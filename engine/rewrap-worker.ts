/*
 * rewrap-worker.ts — takes each message off the intake queue, rewraps it, and
 * moves it to the delivery queue in one atomic batch (intake removal + delivery
 * enqueue), so a crash leaves it in exactly one of the two.
 *
 * For now the rewrap splits the message into one copy per envelope recipient
 * and only prepends our Received: header (RFC 5321 4.4) to each; the rewrap
 * pipeline (suppression, VERP, unsubscribe, tracking, footer, DKIM) plugs in here.
 * Config: engine.hostname, engine.concurrency.
 */
import { Readable } from 'node:stream';
import type { DurableQueue, QueueRecord } from '../common/durable-queue.js';
import type { Logger } from '../common/log.js';
import type { IntakeMeta } from '../common/intake-record.js';
import type { DeliveryMeta } from './delivery-record.js';
import { receivedHeader } from './received-header.js';

export class RewrapWorker {
  constructor(
    private readonly intake: DurableQueue<IntakeMeta>,
    private readonly delivery: DurableQueue<DeliveryMeta>,
    private readonly hostname: string,
    private readonly log: Logger,
  ) {}

  async handle(rec: QueueRecord<IntakeMeta>): Promise<void> {
    const { envelope, account } = rec.meta;
    const now = new Date();
    const prepared = [];
    try {
      for (const recipient of envelope.rcptTo) {
        const copyEnvelope = { ...envelope, rcptTo: [recipient] };
        const header = Buffer.from(receivedHeader(copyEnvelope, this.hostname, rec.id, now));
        const original = await this.intake.openBody(rec);
        const body = Readable.from(
          (async function* () {
            yield header;
            yield* original as AsyncIterable<Buffer>;
          })(),
        );
        const meta: DeliveryMeta = { envelope: copyEnvelope, pending: [recipient], intakeId: rec.id, account, recipient, sender: envelope.mailFrom, stream: 'transactional' };
        prepared.push(await this.delivery.prepare({ meta, body }));
      }
    } catch (e) {
      await Promise.all(prepared.map((p) => p.discard()));
      throw e;
    }
    const moved = await this.intake.ack(rec, prepared.flatMap((p) => p.ops), true);
    if (!moved) {
      await Promise.all(prepared.map((p) => p.discard())); // our lease expired; whoever holds it now will move it
      return;
    }
    this.delivery.added(prepared.length);
    this.log.info({ event: 'rewrapped', intakeId: rec.id, account, copies: prepared.map((p) => p.record.id) }, 'rewrapped');
  }
}
