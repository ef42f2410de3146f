/*
 * webhook-routes.ts — the webhook endpoints of an account (webhooks.ts):
 *   GET    /api/webhooks                 list, with each one's backlog and failures (no secrets)
 *   POST   /api/webhooks                 {url, types?, account?} → 201 {id, secret} (the secret is shown once)
 *   POST   /api/webhooks/:id/test        one signed test POST now → the receiver's status
 *   GET    /api/webhooks/:id/deliveries  its last deliveries (status code, latency, error), newest first
 *   POST   /api/webhooks/:id/enable      takes a disabled endpoint back into service
 *   DELETE /api/webhooks/:id             removes an endpoint added by API (config ones live in the config)
 * An account's API key sees and changes its own account's endpoints only (accountScope).
 * With storage.postgres an endpoint added or deleted here is every node's
 * (webhook-endpoints-postgres.ts; 503 while PostgreSQL does not answer);
 * `enable`, the deliveries and the backlog are this node's.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PostinoError } from '../../common/errors.js';
import { accountScope } from '../../common/http-server.js';
import type { WebhookDispatcher } from './webhooks.js';

const newEndpoint = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    types: z.array(z.string().regex(/^[a-z][a-z.]*$/)).default([]),
    account: z.string().optional(),
  })
  .strict();

function queryAccount(req: FastifyRequest): string | undefined {
  const a = ((req.query ?? {}) as Record<string, unknown>).account;
  return accountScope(req, typeof a === 'string' && a !== '' ? a : undefined);
}

export function registerWebhookRoutes(app: FastifyInstance, hooks: WebhookDispatcher, accounts: readonly string[]): void {
  app.get('/api/webhooks', async (req) => ({ webhooks: hooks.list(queryAccount(req)) }));

  app.post('/api/webhooks', async (req, reply) => {
    const parsed = newEndpoint.safeParse(req.body ?? {});
    if (!parsed.success) throw new PostinoError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
    const account = accountScope(req, parsed.data.account);
    if (account === undefined) throw new PostinoError('BAD_REQUEST', 'account is needed with the node key');
    if (!accounts.includes(account)) throw new PostinoError('NOT_FOUND', `no account "${account}"`);
    const made = await hooks.add(account, parsed.data.url, parsed.data.types);
    return reply.code(201).send({ account, ...made, url: parsed.data.url, types: parsed.data.types });
  });

  app.post('/api/webhooks/:id/test', async (req) => hooks.test(queryAccount(req), (req.params as { id: string }).id));

  app.get('/api/webhooks/:id/deliveries', async (req) => ({ deliveries: hooks.deliveries(queryAccount(req), (req.params as { id: string }).id) }));

  app.post('/api/webhooks/:id/enable', async (req) => {
    await hooks.enable(queryAccount(req), (req.params as { id: string }).id);
    return { enabled: true };
  });

  app.delete('/api/webhooks/:id', async (req) => {
    await hooks.remove(queryAccount(req), (req.params as { id: string }).id);
    return { removed: true };
  });
}
