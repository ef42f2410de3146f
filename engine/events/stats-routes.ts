/*
 * stats-routes.ts — `GET /api/stats?from=&to=&groupBy=day|hour|tag|sender|domain|stream|account&account=&stream=`
 * as JSON, and `GET /api/stats.csv` the same rows as CSV (header `key,<metric>…`).
 * `from`/`to` are ISO times (default: the last 30 days up to now); the rows
 * cover every whole day (or hour) the range touches; `stream=` keeps one
 * stream's counts (with groupBy day, hour or account). An account's API key
 * sees its own account only (accountScope).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { STREAMS, type Stream } from '../../common/config.js';
import { csvRow } from '../../common/csv.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import { timeParam } from './feed-filter.js';
import { GROUP_BY, METRICS, type GroupBy, type StatsCounters, type StatsResult, type StatsRow } from './stats.js';

async function run(stats: StatsCounters, req: FastifyRequest): Promise<StatsResult> {
  const q = (req.query ?? {}) as Record<string, unknown>;
  const g = q.groupBy === undefined || q.groupBy === '' ? 'day' : q.groupBy;
  if (typeof g !== 'string' || !(GROUP_BY as readonly string[]).includes(g)) throw new PostinoError('BAD_REQUEST', `groupBy must be one of ${GROUP_BY.join(', ')}`);
  const requested = typeof q.account === 'string' && q.account !== '' ? q.account : undefined;
  const stream = q.stream === undefined || q.stream === '' ? undefined : q.stream;
  if (stream !== undefined && !(STREAMS as readonly unknown[]).includes(stream)) throw new PostinoError('BAD_REQUEST', `stream must be one of ${STREAMS.join(', ')}`);
  return stats.query({ from: timeParam(q, 'from'), to: timeParam(q, 'to'), groupBy: g as GroupBy, account: accountScope(req, requested), stream: stream as Stream | undefined });
}

export function registerStatsRoutes(app: FastifyInstance, stats: StatsCounters): void {
  app.get('/api/stats', async (req) => run(stats, req));
  app.get('/api/stats.csv', async (req, reply) => {
    const r = await run(stats, req);
    return reply.type('text/csv; charset=utf-8').send(statsCsv(r.groupBy, r.rows));
  });
}

/** Rows as CSV: a header `<groupBy>,<metric>…`, then one line per row (also the dashboard's downloads). */
export function statsCsv(groupBy: GroupBy, rows: readonly StatsRow[]): string {
  return [csvRow([groupBy, ...METRICS]), ...rows.map((row) => csvRow([row.key, ...METRICS.map((m) => row[m])]))].join('');
}
