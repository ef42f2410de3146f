/*
 * http-routes.ts — the delivery stage on the hosted HTTP surface (bearer API key):
 *
 *   GET  /api/queue                   intake size + delivery status (queue-status.ts)
 *                                     + failed records per queue (common/dead-letter.ts)
 *                                     + the installation's nodes (engine/nodes/node-registry.ts)
 *   POST /api/pause   [?account=ID][&reason=text]   kill-switch on, globally or for one account;
 *                                     records the reason and the key that did it
 *   POST /api/resume  [?account=ID]   kill-switch off
 *   GET  /metrics                     Prometheus text (metrics.ts)
 *
 * An unknown account is 404 (a typo must not look like a pause that worked).
 * An account's API key pauses and resumes its own account only; the queue and
 * the metrics are the node's (403 for an account key).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { DurableQueue } from '../../common/durable-queue.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope, requireNode } from '../../common/http-server.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import type { Delivery } from './delivery.js';
import type { NodeStatus } from '../nodes/node-registry.js';

export function registerDeliveryRoutes(
  app: FastifyInstance,
  intake: DurableQueue<IntakeMeta>,
  d: Delivery,
  failed: () => Record<string, number> = () => ({}),
  nodes: () => Promise<NodeStatus[]> = async () => [],
): void {
  app.get('/api/queue', async (req) => {
    requireNode(req);
    return { intake: intake.size, delivery: await d.status(), failed: failed(), nodes: await nodes() };
  });

  const account = (req: FastifyRequest): string | undefined => {
    const given = (req.query as { account?: string } | undefined)?.account;
    const a = accountScope(req, given === '' ? undefined : given);
    if (a === undefined) return undefined;
    if (!d.accounts.has(a)) throw new PostinoError('NOT_FOUND', `no account "${a}"`);
    return a;
  };
  app.post('/api/pause', async (req) => {
    const reason = (req.query as { reason?: string } | undefined)?.reason;
    const p = req.principal;
    const by = p.kind === 'node' ? 'API (node key)' : `API (key ${p.keyId})`;
    return { paused: await d.killSwitch.pause(account(req), { reason: reason?.slice(0, 500), by }) };
  });
  app.post('/api/resume', async (req) => ({ paused: await d.killSwitch.resume(account(req)) }));

  app.get('/metrics', async (req, reply) => {
    requireNode(req);
    const text = await d.metrics.render(await d.status());
    return reply.type(d.metrics.contentType).send(text);
  });
}
