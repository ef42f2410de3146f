/*
 * dashboard.ts — the web dashboard on the hosted HTTP port (DESIGN.md: `/`).
 *
 * Server-rendered pages (html.ts escapes every value), one stylesheet and one
 * small script from /assets, nothing from elsewhere, so it works on a closed
 * network. The routes are `public` for the API's bearer check and guarded here
 * instead by the dashboard's session cookie (sessions.ts): a page without a
 * session redirects to /login, a form post without one is 403.
 *
 * Every POST carries the session's CSRF token in `_csrf` (403 without it, before
 * the handler runs). Every answer carries a Content-Security-Policy (page.ts:
 * no inline script, no framing by others), no-store, nosniff, no-referrer.
 * A session acts with its principal (`req.principal`), so pages narrow to an
 * account with the same accountScope()/requireNode() the API uses.
 *
 * Config: dashboard.enabled (true), dashboard.sessionIdleMinutes (480),
 * dashboard.captureDir (null = sink.dir or <data>/sink), engine.publicUrl
 * (https → Secure cookies), accounts[].dashboard.passwordHash.
 * Side effects: reads the asset files once at registration.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { PostinoError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { sameSecret } from '../../common/secrets.js';
import { registerArchived } from './archived.js';
import { registerCaptured } from './captured.js';
import type { DashboardContext } from './context.js';
import { html } from './html.js';
import { registerLogin, sessionCookieName } from './login.js';
import { registerMessages } from './messages.js';
import { registerOverview } from './overview.js';
import { registerQueueActions } from './queue-actions.js';
import { cookies, field, layout, PAGE_CSP, SECURITY_HEADERS, seeOther, sendHtml } from './page.js';
import type { Session } from './sessions.js';
import { registerStatistics } from './statistics.js';
import { registerSuppressions } from './suppressions.js';
import { registerWebhooks } from './webhooks.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A dashboard route that needs no session (login, assets). */
    dashboardOpen?: boolean;
  }
  interface FastifyRequest {
    dashboardSession: Session | null;
  }
}

/** Dashboard forms are a few fields; a CSV pasted for import is the largest (a few MB at most). */
const FORM_BODY_LIMIT = 8 * 1024 * 1024;
const ASSETS: Record<string, string> = { 'dashboard.css': 'text/css; charset=utf-8', 'dashboard.js': 'text/javascript; charset=utf-8' };

/**
 * The assets folder: next to this file when run from source (tsx), or the source tree's when
 * run from dist/ (tsc copies no assets; the package ships engine/dashboard/assets beside dist).
 */
function assetsDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'assets'), path.resolve(here, '../../../engine/dashboard/assets')];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'dashboard.css')));
  if (!found) throw new Error(`dashboard assets not found in ${candidates.join(' or ')}`);
  return found;
}

function errorPage(reply: FastifyReply, session: Session | null, status: number, message: string): FastifyReply {
  return sendHtml(reply, layout({ title: status === 403 ? 'Not allowed' : status === 404 ? 'Not found' : 'Something went wrong', session: session ?? undefined, body: html`<p class="error" role="alert">${message}</p>` }), status);
}

export function registerDashboard(app: FastifyInstance, ctx: DashboardContext, log: Logger): void {
  const dir = assetsDir();
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: fs.readFileSync(path.join(dir, name)) }]));

  void app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    scope.decorateRequest<Session | null>('dashboardSession', null);

    scope.addHook('onRequest', async (req, reply) => {
      const s = await ctx.sessions.get(cookies(req).get(sessionCookieName(ctx)));
      if (s) {
        req.dashboardSession = s;
        req.principal = s.principal;
        return;
      }
      if (req.routeOptions.config.dashboardOpen) return;
      if (req.method === 'GET' || req.method === 'HEAD') return seeOther(reply, '/login');
      return errorPage(reply, null, 403, 'Your session has ended; log in again.');
    });

    scope.addHook('preHandler', async (req, reply) => {
      if (req.method !== 'POST' || req.routeOptions.config.dashboardOpen || !req.dashboardSession) return;
      const given = field(req.body, '_csrf');
      if (!given || !sameSecret(given, req.dashboardSession.csrf)) return errorPage(reply, req.dashboardSession, 403, 'This form is missing its security token (CSRF); reload the page and try again.');
    });

    scope.addHook('onSend', async (_req, reply, payload) => {
      // Routes that serve a captured body set their own, stricter policy.
      if (!reply.hasHeader('content-security-policy')) reply.header('content-security-policy', PAGE_CSP);
      reply.headers(SECURITY_HEADERS);
      return payload;
    });

    scope.setErrorHandler((err: unknown, req, reply) => {
      if (err instanceof PostinoError) return errorPage(reply, req.dashboardSession, err.httpStatus, err.reason);
      const e = err as Error & { statusCode?: number };
      const status = e.statusCode ?? 500;
      if (status >= 500) log.error({ err: e, url: req.url }, 'dashboard page failed');
      return errorPage(reply, req.dashboardSession, status, status >= 500 ? 'Internal error (see the node log).' : e.message);
    });

    scope.get('/assets/:name', { config: { public: true, dashboardOpen: true } }, async (req, reply) => {
      const a = assets.get((req.params as { name: string }).name);
      if (!a) return reply.code(404).type('text/plain').send('not found');
      return reply.type(a.type).send(a.body);
    });

    registerLogin(scope, ctx);
    registerOverview(scope, ctx);
    registerMessages(scope, ctx);
    registerSuppressions(scope, ctx);
    registerCaptured(scope, ctx);
    registerArchived(scope, ctx);
    registerQueueActions(scope, ctx, log);
    registerStatistics(scope, ctx);
    registerWebhooks(scope, ctx);
  });
}
