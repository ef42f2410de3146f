/*
 * http-api.ts — the hosted HTTP surface (fastify on engine port 8080).
 *
 * GET /health (public); every other route needs a bearer API key, the node's
 * or an account's (common/api-keys.ts). The
 * stages register their routes on it (delivery/http-routes.ts: /api/queue,
 * pause/resume, /metrics; events/http-routes.ts: /api/events); tracking,
 * unsubscribe and the dashboard join in later stages.
 * Config: http.host/port, http.apiKeyEnv.
 */
import type { FastifyInstance } from 'fastify';
import { createHttpServer, type HttpAuth } from '../common/http-server.js';
import type { Logger } from '../common/log.js';

export function createHostedApi(auth: HttpAuth, log: Logger): FastifyInstance {
  const app = createHttpServer(auth, log);
  app.get('/health', { config: { public: true } }, async () => ({ ok: true }));
  return app;
}
