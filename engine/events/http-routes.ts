/*
 * http-routes.ts — `GET /api/events?after=<seq>&limit=<n>` (bearer API key):
 * the event log as NDJSON, oldest first, resumable by `seq` (DESIGN.md, Events).
 * A client keeps the last `seq` it saw and asks for `after=<that>`; events
 * never appear out of order or late (event-log.ts watermark).
 * `type=<t>` keeps one event type, `account=<id>` one account; an account's
 * API key sees its own account's events only. Other filters, CSV and webhooks come with the exporter issue.
 */
import type { FastifyInstance } from 'fastify';
import type { PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import type { EventLog } from './event-log.js';

/** One response holds at most this many events; clients page with `after`. */
const MAX_LIMIT = 10_000;
const DEFAULT_LIMIT = 1_000;

function intParam(v: unknown, name: string, def: number): number {
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new PostinoError('BAD_REQUEST', `${name} must be a non-negative integer`);
  return n;
}

export function registerEventRoutes(app: FastifyInstance, events: EventLog): void {
  app.get('/api/events', async (req, reply) => {
    const q = (req.query ?? {}) as Record<string, unknown>;
    const after = intParam(q.after, 'after', 0);
    const limit = Math.min(MAX_LIMIT, Math.max(1, intParam(q.limit, 'limit', DEFAULT_LIMIT)));
    const type = typeof q.type === 'string' && q.type !== '' ? q.type : undefined;
    const account = accountScope(req, typeof q.account === 'string' && q.account !== '' ? q.account : undefined);
    const keep = type || account ? (e: PostinoEvent) => (!type || e.type === type) && (!account || e.account === account) : undefined;
    const list = await events.read(after, limit, keep);
    return reply.type('application/x-ndjson').send(list.map((e) => JSON.stringify(e) + '\n').join(''));
  });
}
