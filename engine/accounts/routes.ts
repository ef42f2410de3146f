/*
 * routes.ts — the accounts API of a hosted node (bearer API key), for the
 * customer's tooling and for `postino hosted allow|users|senders|quota|reload`:
 *
 *   GET    /api/accounts                          → {"accounts": [{id, networks, users, senderDomains, quotas}]}
 *   GET    /api/accounts/<id>/networks            → {"account", "networks": [...]}
 *   POST   /api/accounts/<id>/networks            {cidr, force?}       add to the allowlist
 *   DELETE /api/accounts/<id>/networks?cidr=      remove
 *   GET    /api/accounts/<id>/users               → {"account", "users": [names]}
 *   POST   /api/accounts/<id>/users               {username, password} add, or set a new password
 *   DELETE /api/accounts/<id>/users?username=
 *   GET    /api/accounts/<id>/sender-domains      → {"account", "senderDomains": [...]}
 *   POST   /api/accounts/<id>/sender-domains      {domain}
 *   DELETE /api/accounts/<id>/sender-domains?domain=
 *   GET    /api/accounts/<id>/quotas              → {"account", "quotas": {messagesPerHour, messagesPerDay, quotaUnit}}
 *   PUT    /api/accounts/<id>/quotas              {messagesPerHour?, messagesPerDay?, quotaUnit?}   node key only
 *   GET    /api/accounts/<id>/history?limit=      → {"account", "history": [account.changed events, newest first]}
 *   POST   /api/reload                            node key only → ReloadAnswer (common/config-reload.ts)
 *
 * A change answers {account, part, before, after, changed, event}; adding what
 * is there already changes nothing and writes no event. Who may do what: the
 * node key everything; an account key reads and changes its own account only
 * (403 for another), never forces a broad network (403) and never sets its own
 * quotas (a quota is the operator's limit on the customer, not the customer's).
 * Passwords are hashed here (scrypt, common/password-hash.ts) and never stored
 * or shown in clear.
 *
 * Side effects: through AccountService (LevelDB or, with storage.postgres,
 * PostgreSQL writes: 503 while it does not answer; the accounts swap).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AccountConfig } from '../../common/config.js';
import { PostinoError } from '../../common/errors.js';
import { accountScope, requireNode } from '../../common/http-server.js';
import { hashPassword } from '../../common/password-hash.js';
import type { AccountEdit, AccountService, EditResult } from './account-service.js';
import { partView } from './audit.js';

const MAX_HISTORY = 1_000;
const DEFAULT_HISTORY = 100;
/** Longer passwords only cost scrypt time; 1,024 characters is beyond any generated secret. */
const MAX_PASSWORD = 1_024;
const QUOTA_UNITS = ['messages', 'recipients'] as const;

type Params = { Params: { id: string } };

function field(body: unknown, name: string): string {
  const v = (body as Record<string, unknown> | null | undefined)?.[name];
  if (typeof v !== 'string' || v === '') throw new PostinoError('BAD_REQUEST', `${name} is required`);
  return v;
}

function queryField(req: FastifyRequest, name: string): string {
  return field(req.query, name);
}

function summary(a: AccountConfig): Record<string, unknown> {
  return { id: a.id, networks: partView(a, 'networks'), users: partView(a, 'users'), senderDomains: partView(a, 'senderDomains'), quotas: partView(a, 'quotas') };
}

function answer(r: EditResult): Record<string, unknown> {
  return { account: r.account, part: r.part, before: r.before, after: r.after, changed: r.event !== undefined, event: r.event ?? null };
}

function optionalCount(body: Record<string, unknown>, name: string): number | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new PostinoError('BAD_REQUEST', `${name} is a whole number ≥ 0 (0 = unlimited)`);
  return v;
}

export function registerAccountRoutes(app: FastifyInstance, accounts: AccountService): void {
  /** The account of the path, if this key may act on it. */
  const target = (req: FastifyRequest<Params>): string => {
    const id = accountScope(req, req.params.id)!;
    accounts.account(id);
    return id;
  };
  const edit = async (req: FastifyRequest<Params>, e: AccountEdit): Promise<Record<string, unknown>> => answer(await accounts.edit(target(req), e, req.principal));

  app.get('/api/accounts', async (req) => {
    const own = accountScope(req, undefined);
    return { accounts: accounts.accounts.filter((a) => own === undefined || a.id === own).map(summary) };
  });

  app.get<Params>('/api/accounts/:id/networks', async (req) => ({ account: target(req), networks: partView(accounts.account(target(req)), 'networks') }));
  app.post<Params>('/api/accounts/:id/networks', async (req) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    return edit(req, { part: 'networks', action: 'add', item: field(body, 'cidr'), force: body.force === true });
  });
  app.delete<Params>('/api/accounts/:id/networks', async (req) => edit(req, { part: 'networks', action: 'remove', item: queryField(req, 'cidr') }));

  app.get<Params>('/api/accounts/:id/users', async (req) => ({ account: target(req), users: partView(accounts.account(target(req)), 'users') }));
  app.post<Params>('/api/accounts/:id/users', async (req) => {
    const username = field(req.body, 'username');
    const password = field(req.body, 'password');
    if (password.length > MAX_PASSWORD) throw new PostinoError('BAD_REQUEST', `password is longer than ${MAX_PASSWORD} characters`);
    target(req); // 403/404 before spending scrypt time
    return edit(req, { part: 'users', action: 'add', user: { username, passwordHash: await hashPassword(password) } });
  });
  app.delete<Params>('/api/accounts/:id/users', async (req) => edit(req, { part: 'users', action: 'remove', item: queryField(req, 'username') }));

  app.get<Params>('/api/accounts/:id/sender-domains', async (req) => ({ account: target(req), senderDomains: partView(accounts.account(target(req)), 'senderDomains') }));
  app.post<Params>('/api/accounts/:id/sender-domains', async (req) => edit(req, { part: 'senderDomains', action: 'add', item: field(req.body, 'domain').toLowerCase() }));
  app.delete<Params>('/api/accounts/:id/sender-domains', async (req) => edit(req, { part: 'senderDomains', action: 'remove', item: queryField(req, 'domain').toLowerCase() }));

  app.get<Params>('/api/accounts/:id/quotas', async (req) => ({ account: target(req), quotas: partView(accounts.account(target(req)), 'quotas') }));
  app.put<Params>('/api/accounts/:id/quotas', async (req) => {
    requireNode(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const unit = body.quotaUnit;
    if (unit !== undefined && !QUOTA_UNITS.includes(unit as (typeof QUOTA_UNITS)[number])) throw new PostinoError('BAD_REQUEST', 'quotaUnit is "messages" or "recipients"');
    const quotas = { messagesPerHour: optionalCount(body, 'messagesPerHour'), messagesPerDay: optionalCount(body, 'messagesPerDay'), quotaUnit: unit as (typeof QUOTA_UNITS)[number] | undefined };
    if (Object.values(quotas).every((v) => v === undefined)) throw new PostinoError('BAD_REQUEST', 'give messagesPerHour, messagesPerDay or quotaUnit');
    return edit(req, { part: 'quotas', action: 'set', quotas });
  });

  app.get<Params & { Querystring: { limit?: string } }>('/api/accounts/:id/history', async (req) => {
    const limit = Math.min(MAX_HISTORY, Math.max(1, Number(req.query.limit ?? DEFAULT_HISTORY) || DEFAULT_HISTORY));
    const id = target(req);
    return { account: id, history: await accounts.history(id, limit) };
  });

  app.post('/api/reload', async (req) => {
    requireNode(req);
    return accounts.reload();
  });
}
