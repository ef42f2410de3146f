/*
 * Our SMTP intake (common/smtp-intake.ts) as the unit tests start it: on a loopback port, for
 * 127.0.0.1 only, no greeting delay, messages up to 100 KB to up to 10 recipients, the envelope as
 * the meta; `extra` sets anything else (TLS, limits).
 */
import type { DurableQueue } from '../../common/durable-queue.js';
import type { Logger } from '../../common/log.js';
import { startIntake, type Envelope, type Intake, type IntakeOptions } from '../../common/smtp-intake.js';

export type EnvelopeMeta = { envelope: Envelope };

export function loopbackIntake(queue: DurableQueue<EnvelopeMeta>, log: Logger, extra: Partial<IntakeOptions<EnvelopeMeta>> = {}): Promise<Intake> {
  return startIntake<EnvelopeMeta>({
    name: 'test',
    host: '127.0.0.1',
    port: 0,
    maxSize: 100_000,
    maxRecipients: 10,
    greetingDelayMs: 0,
    trustedNetworks: ['127.0.0.1/32'],
    allowNetworks: ['127.0.0.1/32'],
    idleTimeoutMs: 10_000,
    queue,
    toMeta: (envelope) => ({ envelope }),
    log,
    ...extra,
  });
}
