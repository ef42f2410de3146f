/*
 * http-server.ts — a fastify instance with bearer-token auth, shared by the
 * forwarder's admin API and the hosted HTTP surface.
 *
 * Routes registered with `{ config: { public: true } }` skip the token check
 * (health, tracking pixels, unsubscribe pages); everything else needs
 * `Authorization: Bearer <token>` and gets 401 otherwise. The caller becomes
 * `req.principal` (api-keys.ts): the node, or one account, which routes narrow
 * to with `accountScope()` / `requireNode()` (403 beyond it). Errors carrying
 * an httpStatus (PostinoError) become that status with a JSON body.
 */
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Principal } from './api-keys.js';
import { PostinoError } from './errors.js';
import type { Logger } from './log.js';
import { sameSecret } from './secrets.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    public?: boolean;
  }
  interface FastifyRequest {
    /** Set for every non-public route; null on public ones (accountScope there fails closed). */
    principal: Principal;
  }
}

/** The node's single key (forwarder admin), or a resolver of node and account keys (hosted). */
export type HttpAuth = string | ((token: string) => Promise<Principal | undefined>);

const NODE: Principal = { kind: 'node' };

/**
 * The account a request may act on. The node key may name any account or none
 * (`undefined` = all); an account key acts on its own account only, and naming
 * another one is 403, not an empty answer that looks like "nothing there".
 */
export function accountScope(req: FastifyRequest, requested: string | undefined): string | undefined {
  const p = req.principal;
  if (p.kind === 'node') return requested;
  if (requested !== undefined && requested !== p.account) throw new PostinoError('FORBIDDEN', `this API key belongs to account "${p.account}"`);
  return p.account;
}

/** Account ids a route accepts: a live set (the delivery stage's follows reloads) or a fixed list (tests). */
export type KnownAccounts = ReadonlySet<string> | readonly string[];

/**
 * The `account` parameter of an account-facing route: accountScope(), then
 * required (an account key fills in its own) and known (a typo is 400, never
 * an empty answer).
 */
export function accountParam(req: FastifyRequest, given: unknown, known: KnownAccounts, required: boolean, hint = ''): string | undefined {
  const a = accountScope(req, typeof given === 'string' && given !== '' ? given : undefined);
  if (!a && required) throw new PostinoError('BAD_REQUEST', `account is required${hint}`);
  const has = known instanceof Set ? known.has(a ?? '') : (known as readonly string[]).includes(a ?? '');
  if (a && !has) throw new PostinoError('BAD_REQUEST', `unknown account "${a}"`);
  return a;
}

/** Node-wide operations (global kill-switch, failed records of every account, key rotation). */
export function requireNode(req: FastifyRequest): void {
  if (req.principal.kind !== 'node') throw new PostinoError('FORBIDDEN', 'this needs the node API key, not an account key');
}

/**
 * Route parameters (a click token carries the encrypted original URL) may be this long;
 * fastify's default of 100 would answer 404 to every real click link. URLs over 2,000
 * characters break in browsers anyway; Node caps the whole request head at 16 KiB.
 */
const MAX_PARAM_LENGTH = 8_192;

export function createHttpServer(auth: HttpAuth, log: Logger): FastifyInstance {
  // Fastify's own request logging is off: one line per request would drown the mail events.
  const app = Fastify({ logger: false, routerOptions: { maxParamLength: MAX_PARAM_LENGTH } });
  const resolve = typeof auth === 'string' ? async (t: string) => (sameSecret(t, auth) ? NODE : undefined) : auth;
  // Set by the hook below before any handler of a non-public route runs; null keeps the request shape stable.
  app.decorateRequest<Principal | null>('principal', null);
  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.config.public) return;
    const h = req.headers.authorization ?? '';
    const given = h.startsWith('Bearer ') ? h.slice(7).trim() : '';
    const who = given ? await resolve(given) : undefined;
    if (!who) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token' });
    req.principal = who;
  });
  app.setErrorHandler((err: unknown, _req, reply) => {
    if (err instanceof PostinoError) return reply.code(err.httpStatus).send({ error: err.reason, code: err.code });
    const e = err as Error & { statusCode?: number };
    const status = e.statusCode ?? 500;
    if (status >= 500) log.error({ err: e }, 'http handler failed');
    return reply.code(status).send({ error: status >= 500 ? 'internal error' : e.message });
  });
  return app;
}

export interface ListenHttpOptions {
  host: string;
  /** 0 = any free port (tests). */
  port: number;
  /** Which surface, for the `listening` log line ("forwarder admin", "hosted"). */
  what: string;
  log: Logger;
}

/** listen(), then the `listening` log line; resolves to the bound port. */
export async function listenHttp(app: FastifyInstance, { host, port, what, log }: ListenHttpOptions): Promise<number> {
  await app.listen({ host, port });
  const addr = app.server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  log.info({ event: 'listening', what, address: host, port: bound }, `${what} HTTP listening on ${host}:${bound}`);
  return bound;
}
