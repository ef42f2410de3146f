/*
 * http-api.ts — the hosted HTTP surface (fastify on engine port 8080).
 *
 * GET /health (public), GET /api/queue (bearer API key): message counts of the
 * intake and delivery queues. Tracking, unsubscribe, events and the dashboard
 * join here in later stages. Config: http.host/port, http.apiKeyEnv.
 */
import type { FastifyInstance } from 'fastify';
import type { DurableQueue } from '../common/durable-queue.js';
import { createHttpServer } from '../common/http-server.js';
import type { IntakeMeta } from '../common/intake-record.js';
import type { Logger } from '../common/log.js';
import type { DeliveryMeta } from './delivery/delivery-record.js';

export function createHostedApi(apiKey: string, intake: DurableQueue<IntakeMeta>, delivery: DurableQueue<DeliveryMeta>, log: Logger): FastifyInstance {
  const app = createHttpServer(apiKey, log);
  app.get('/health', { config: { public: true } }, async () => ({ ok: true }));
  // GET /api/queue, pause/resume and /metrics: delivery/http-routes.ts.
  void intake;
  void delivery;
  return app;
}
