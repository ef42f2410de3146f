/*
 * admin-api.ts — the forwarder's admin HTTP API (fastify, bearer token).
 *
 * GET /status — queued, in flight, deferred, delivered, failed, paused,
 * oldest message age. Config: forwarder.admin.host/port (127.0.0.1:8025),
 * forwarder.admin.tokenEnv (else <data>/secrets/admin-token).
 */
import type { FastifyInstance } from 'fastify';
import type { DurableQueue } from '../common/durable-queue.js';
import type { Logger } from '../common/log.js';
import { createHttpServer } from '../common/http-server.js';
import type { RelayCounters } from '../common/relay-worker.js';
import type { SpoolMeta } from './spool-record.js';

export interface ForwarderStatus {
  queued: number;
  inFlight: number;
  deferred: number;
  delivered: number;
  failed: number;
  paused: boolean;
  oldestAgeSeconds: number;
}

export interface StatusSource {
  spool: DurableQueue<SpoolMeta>;
  counters: RelayCounters;
  inFlight(): number;
  paused(): boolean;
  now(): number;
}

export async function forwarderStatus(s: StatusSource): Promise<ForwarderStatus> {
  let queued = 0;
  let deferred = 0;
  let oldest = Infinity;
  const now = s.now();
  for await (const rec of s.spool.records()) {
    queued++;
    if (rec.meta.lastError && rec.leasedUntil === 0) deferred++;
    oldest = Math.min(oldest, rec.enqueuedAt);
  }
  return {
    queued,
    inFlight: s.inFlight(),
    deferred,
    delivered: s.counters.delivered,
    failed: s.counters.failed,
    paused: s.paused(),
    oldestAgeSeconds: oldest === Infinity ? 0 : Math.round((now - oldest) / 1000),
  };
}

export function createAdminApi(token: string, source: StatusSource, log: Logger): FastifyInstance {
  const app = createHttpServer(token, log);
  app.get('/health', { config: { public: true } }, async () => ({ ok: true }));
  app.get('/status', async () => forwarderStatus(source));
  return app;
}
