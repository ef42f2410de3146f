/*
 * admin-api.ts — the forwarder's admin HTTP API (fastify, bearer token).
 *
 *   GET    /status                 queued, in flight, deferred, delivered, failed,
 *                                  paused, oldest age, relay rate, estimated drain seconds,
 *                                  held, and each listener's state (up, down since,
 *                                  next probe, messages held for it)
 *   POST   /pause[?intake=1]       kill-switch: stop relaying (and refuse new mail)
 *   POST   /resume                 relay again (and accept again)
 *   GET    /queue?state=deferred|in-flight|all&limit=N
 *                                  ids, sender, recipients, attempts, next attempt, last error
 *   POST   /queue/<id>/retry       make a waiting message due now      (404 unknown, 409 in flight)
 *   DELETE /queue/<id>             drop a waiting message, no DSN      (404 unknown, 409 in flight)
 *   GET    /metrics                Prometheus text format
 *   GET    /health                 no token
 *
 * Config: forwarder.admin.host/port (127.0.0.1:8025), forwarder.admin.tokenEnv
 * (else <data>/secrets/admin-token).
 * Side effects: spool changes through the admin actions (synced writes).
 */
import type { FastifyInstance } from 'fastify';
import type { DurableQueue, QueueRecord } from '../common/durable-queue.js';
import { PostinoError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { createHttpServer } from '../common/http-server.js';
import { redactUrl } from '../common/redact.js';
import type { RelayHealthStatus } from '../common/relay-health.js';
import type { RelayCounters } from './relay-worker.js';
import type { Relaying, RelayPause, RelayPauseState } from './relay-pause.js';
import type { ForwarderMetrics, QueueGauges } from './metrics.js';
import type { SpoolMeta } from './spool-record.js';

/** A listing longer than this is cut; the admin API is for people, not exports. */
const MAX_LIST = 1000;

export interface ForwarderStatus {
  queued: number;
  inFlight: number;
  deferred: number;
  delivered: number;
  failed: number;
  paused: boolean;
  intakePaused: boolean;
  pausedSince: string | null;
  oldestAgeSeconds: number;
  /** Messages relayed per second over the last minute. */
  relayRatePerSecond: number;
  /** queued ÷ relay rate; null while paused or when nothing was relayed lately (unknown). */
  estimatedDrainSeconds: number | null;
  spoolDiskBytes: number;
  /** Messages waiting because every listener is down (0 while one is up). */
  held: number;
  /** Each listener URL: up, or down since, next probe, last error, held. */
  relays: RelayHealthStatus[];
}

/** What /status, /metrics and /pause|/resume read and drive: the spool, the relay loop and its kill-switch. */
export interface ForwarderStatusSource {
  spool: DurableQueue<SpoolMeta>;
  counters: RelayCounters;
  inFlight(): number;
  killSwitch: RelayPause;
  relaying: Relaying;
  metrics: ForwarderMetrics;
  relays(): RelayHealthStatus[];
  /** Bytes under the spool folder (Store.diskUsage: cached, walked asynchronously). */
  diskBytes(): Promise<number>;
  now(): number;
}

/** Tried and given back with an error (the spool's `tally`, so /status needs no scan). */
export function triedAndDeferred(rec: QueueRecord<SpoolMeta>): boolean {
  return rec.meta.lastError !== undefined;
}

function isDeferred(rec: QueueRecord<SpoolMeta>): boolean {
  return triedAndDeferred(rec) && rec.leasedUntil === 0;
}

/**
 * Constant work whatever the spool holds: the counts are kept by the queue and
 * the oldest message is one seek. (A scan cost 6 µs per message: 6 s per
 * scrape for the million messages an hour-long outage can leave.)
 */
export async function queueGauges(s: ForwarderStatusSource): Promise<QueueGauges> {
  const oldest = await s.spool.oldest();
  const ks = s.killSwitch.state;
  return {
    queued: s.spool.size,
    inFlight: s.inFlight(),
    deferred: s.spool.tallied,
    paused: ks.relayPaused,
    intakePaused: ks.intakePaused,
    oldestAgeSeconds: oldest ? Math.round((s.now() - oldest.enqueuedAt) / 1000) : 0,
    diskBytes: await s.diskBytes(),
  };
}

export async function forwarderStatus(s: ForwarderStatusSource): Promise<ForwarderStatus> {
  const g = await queueGauges(s);
  const rate = s.metrics.relayRate();
  const ks = s.killSwitch.state;
  const relays = s.relays();
  const held = relays.every((r) => r.state === 'down') ? Math.max(0, g.queued - g.inFlight) : 0;
  return {
    queued: g.queued,
    inFlight: g.inFlight,
    deferred: g.deferred,
    delivered: s.counters.delivered,
    failed: s.counters.failed,
    paused: g.paused,
    intakePaused: g.intakePaused,
    pausedSince: ks.relayPaused ? ks.since : null,
    oldestAgeSeconds: g.oldestAgeSeconds,
    relayRatePerSecond: Math.round(rate * 10) / 10,
    estimatedDrainSeconds: g.queued === 0 ? 0 : g.paused || held > 0 || rate === 0 ? null : Math.ceil(g.queued / rate),
    spoolDiskBytes: g.diskBytes,
    held,
    relays,
  };
}

export interface QueueEntry {
  id: string;
  state: 'in-flight' | 'deferred' | 'waiting';
  from: string;
  recipients: string[];
  attempts: number;
  enqueuedAt: string;
  nextAttemptAt: string | null;
  size: number;
  lastError: { code: number; enhanced: string; response: string; at: string; relay?: string | undefined } | null;
}

function entry(rec: QueueRecord<SpoolMeta>): QueueEntry {
  const e = rec.meta.lastError;
  return {
    id: rec.id,
    state: rec.leasedUntil > 0 ? 'in-flight' : isDeferred(rec) ? 'deferred' : 'waiting',
    from: rec.meta.envelope.mailFrom,
    recipients: rec.meta.pending,
    attempts: rec.attempts,
    enqueuedAt: new Date(rec.enqueuedAt).toISOString(),
    nextAttemptAt: rec.leasedUntil > 0 ? null : new Date(rec.due).toISOString(),
    size: rec.body.size,
    lastError: e ? { code: e.code, enhanced: e.enhanced, response: e.response, at: new Date(e.at).toISOString(), relay: e.relay && redactUrl(e.relay) } : null,
  };
}

type ListState = 'deferred' | 'in-flight' | 'waiting' | 'all';
const LIST_STATES: readonly ListState[] = ['deferred', 'in-flight', 'waiting', 'all'];

export function createAdminApi(token: string, s: ForwarderStatusSource, log: Logger): FastifyInstance {
  const app = createHttpServer(token, log);
  app.get('/health', { config: { public: true } }, async () => ({ ok: true }));
  app.get('/status', async () => forwarderStatus(s));

  app.post<{ Querystring: { intake?: string } }>('/pause', async (req): Promise<RelayPauseState> => {
    const intake = ['1', 'true', 'yes'].includes(String(req.query.intake ?? '').toLowerCase());
    return s.killSwitch.pause(s.relaying, { intake });
  });
  app.post('/resume', async (): Promise<RelayPauseState> => s.killSwitch.resume(s.relaying));

  app.get<{ Querystring: { state?: string; limit?: string } }>('/queue', async (req) => {
    const state = (req.query.state ?? 'all') as ListState;
    if (!LIST_STATES.includes(state)) throw new PostinoError('BAD_REQUEST', `state must be one of ${LIST_STATES.join(', ')}`);
    const limit = Math.min(MAX_LIST, Math.max(1, Number(req.query.limit ?? MAX_LIST) || MAX_LIST));
    const out: QueueEntry[] = [];
    let total = 0;
    for await (const rec of s.spool.records()) {
      const e = entry(rec);
      if (state !== 'all' && e.state !== state) continue;
      total++;
      if (out.length < limit) out.push(e);
    }
    return { state, total, messages: out };
  });

  async function waiting(id: string): Promise<QueueRecord<SpoolMeta>> {
    const rec = await s.spool.get(id);
    if (!rec) throw new PostinoError('NOT_FOUND', `no message ${id} in the spool`);
    if (rec.leasedUntil > 0) throw new PostinoError('IN_FLIGHT', `message ${id} is being relayed now`);
    return rec;
  }

  app.post<{ Params: { id: string } }>('/queue/:id/retry', async (req) => {
    const rec = await waiting(req.params.id);
    if (!(await s.spool.reschedule(rec.id, s.now()))) throw new PostinoError('IN_FLIGHT', `message ${rec.id} is being relayed now`);
    log.info({ event: 'admin-retry', queueId: rec.id }, 'retry requested through the admin API');
    return { id: rec.id, retry: 'now' };
  });

  app.delete<{ Params: { id: string } }>('/queue/:id', async (req) => {
    const rec = await waiting(req.params.id);
    if (!(await s.spool.remove(rec.id))) throw new PostinoError('IN_FLIGHT', `message ${rec.id} is being relayed now`);
    s.metrics.adminDeleted.inc();
    log.warn({ event: 'admin-delete', queueId: rec.id, from: rec.meta.envelope.mailFrom, recipients: rec.meta.pending }, 'message deleted through the admin API (no DSN)');
    return { id: rec.id, deleted: true };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', s.metrics.contentType);
    return s.metrics.text();
  });
  return app;
}
