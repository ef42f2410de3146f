/*
 * failed-routes.ts — the failed records (dead letters, common/dead-letter.ts) of
 * the engine's queues on the hosted HTTP surface (bearer API key):
 *
 *   GET    /api/failed              every failed message: queue, id, when, attempts, error
 *   POST   /api/failed/<id>/retry   back into its queue, due now, with a fresh attempt count
 *   DELETE /api/failed/<id>         gone, body included
 *
 * and their count per queue on `GET /metrics` (postino_failed_messages{queue}).
 * An unknown id is 404. Side effects: LevelDB writes (synced), blob removal.
 */
import type { FastifyInstance } from 'fastify';
import { Gauge, type Registry } from 'prom-client';
import type { DurableQueue, QueueRecord } from '../common/durable-queue.js';
import { PostinoError } from '../common/errors.js';
import { requireNode } from '../common/http-server.js';

/** The engine's queues by name (intake, delivery, feedback). */
export type FailedQueues = ReadonlyArray<DurableQueue<unknown>>;

export interface FailedEntry {
  queue: string;
  id: string;
  failedAt: string | undefined;
  attempts: number;
  error: string | undefined;
  account: string | undefined;
  recipients: string[];
  sender: string | undefined;
}

/** Failed records per queue name, for status pages. */
export function failedCounts(queues: FailedQueues): Record<string, number> {
  return Object.fromEntries(queues.map((q) => [q.name, q.failedCount]));
}

/** What a listing shows of one failed record, whatever its queue's metadata. */
function entry(queue: string, rec: QueueRecord<unknown>): FailedEntry {
  const m = rec.meta as { account?: unknown; recipient?: unknown; sender?: unknown; envelope?: { rcptTo?: string[]; mailFrom?: string } };
  const recipients = typeof m.recipient === 'string' ? [m.recipient] : (m.envelope?.rcptTo ?? []);
  return {
    queue,
    id: rec.id,
    failedAt: rec.failedAt === undefined ? undefined : new Date(rec.failedAt).toISOString(),
    attempts: Math.max(rec.attempts, rec.failures ?? 0),
    error: rec.lastError,
    account: typeof m.account === 'string' ? m.account : undefined,
    recipients,
    sender: typeof m.sender === 'string' ? m.sender : m.envelope?.mailFrom,
  };
}

export function registerFailedRoutes(app: FastifyInstance, queues: FailedQueues, registry: Registry): void {
  new Gauge({
    name: 'postino_failed_messages',
    help: 'Messages moved to the failed records after engine.maxAttempts failed attempts, by queue',
    labelNames: ['queue'],
    registers: [registry],
    collect() {
      for (const q of queues) this.set({ queue: q.name }, q.failedCount);
    },
  });

  // The failed records mix every account's messages: the operator's, node key only.
  app.get('/api/failed', async (req) => {
    requireNode(req);
    const out: FailedEntry[] = [];
    for (const q of queues) for await (const rec of q.failedRecords()) out.push(entry(q.name, rec));
    return { failed: out };
  });

  /** The queue holding failed record `id`; 404 when none does. */
  const holder = async (id: string): Promise<DurableQueue<unknown>> => {
    for (const q of queues) if (await q.getFailed(id)) return q;
    throw new PostinoError('NOT_FOUND', `no failed message "${id}"`);
  };
  app.post<{ Params: { id: string } }>('/api/failed/:id/retry', async (req) => {
    requireNode(req);
    const q = await holder(req.params.id);
    if (!(await q.retryFailed(req.params.id, Date.now()))) throw new PostinoError('NOT_FOUND', `no failed message "${req.params.id}"`);
    return { retried: req.params.id, queue: q.name };
  });
  app.delete<{ Params: { id: string } }>('/api/failed/:id', async (req) => {
    requireNode(req);
    const q = await holder(req.params.id);
    if (!(await q.deleteFailed(req.params.id))) throw new PostinoError('NOT_FOUND', `no failed message "${req.params.id}"`);
    return { deleted: req.params.id, queue: q.name };
  });
}
