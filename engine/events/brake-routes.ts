/*
 * brake-routes.ts — `GET /api/brake [?account=ID]`: the accounts the
 * reputation brake paused, when and why, with the figures
 * (reputation-brake.ts); `postino hosted status` prints it. Resuming is
 * POST /api/resume?account=ID (the delivery kill-switch). An account's key
 * sees its own account only.
 */
import type { FastifyInstance } from 'fastify';
import { accountScope } from '../../common/http-server.js';
import type { ReputationBrake } from './reputation-brake.js';

export function registerBrakeRoutes(app: FastifyInstance, brake: ReputationBrake): void {
  app.get('/api/brake', async (req) => {
    const a = ((req.query ?? {}) as Record<string, unknown>).account;
    const account = accountScope(req, typeof a === 'string' && a !== '' ? a : undefined);
    return { paused: brake.state().filter((s) => account === undefined || s.account === account) };
  });
}
