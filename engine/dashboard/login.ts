/*
 * login.ts — GET/POST /login and POST /logout.
 *
 * Who may log in: the operator with the node API key (sees every account), an
 * account with one of its API keys (accounts[].apiKeys) or with its dashboard
 * password (accounts[].dashboard.passwordHash, scrypt). The login form has its
 * own CSRF token, double-submitted through a short-lived cookie, so another site
 * cannot log a browser into an account of its choosing (login CSRF).
 * Side effects: CPU (scrypt) per attempt, which is also what makes guessing slow.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Principal } from '../../common/api-keys.js';
import { verifyPassword } from '../../common/password-hash.js';
import { sameSecret } from '../../common/secrets.js';
import type { DashboardContext } from './context.js';
import { html } from './html.js';
import { cookies, field, layout, seeOther, sendHtml } from './page.js';

const LOGIN_COOKIE = 'postino_login';

/** Cookies get `Secure` (and the session one the `__Host-` prefix) when the node is reached over https. */
export function cookiesSecure(publicUrl: string | null): boolean {
  return publicUrl !== null && publicUrl.startsWith('https:');
}

export function sessionCookieName(ctx: DashboardContext): string {
  // __Host-: the browser keeps it only if Secure, Path=/ and no Domain, so a sibling host cannot plant one.
  return ctx.secureCookies ? '__Host-postino_session' : 'postino_session';
}

function cookie(ctx: DashboardContext, name: string, value: string, extra = ''): string {
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Strict${ctx.secureCookies ? '; Secure' : ''}${extra}`;
}

/** The principal behind a login form, or undefined. */
async function authenticate(ctx: DashboardContext, account: string | undefined, secret: string): Promise<{ principal: Principal; label: string } | undefined> {
  const entry = account ? ctx.accounts.find((a) => a.id === account) : undefined;
  if (entry?.dashboard.passwordHash && (await verifyPassword(secret, entry.dashboard.passwordHash))) {
    return { principal: { kind: 'account', account: entry.id, keyId: 'password' }, label: entry.id };
  }
  const p = await ctx.apiKeys.principal(secret);
  if (!p) return undefined;
  // An account key logs into its own account whatever the form named.
  return { principal: p, label: p.kind === 'node' ? 'operator' : p.account };
}

function loginPage(reply: FastifyReply, ctx: DashboardContext, problem?: string, status = 200): FastifyReply {
  const token = randomBytes(24).toString('base64url');
  reply.header('set-cookie', cookie(ctx, LOGIN_COOKIE, token));
  return sendHtml(
    reply,
    layout({
      title: 'Log in',
      session: undefined,
      body: html`${problem && html`<p class="error" role="alert">${problem}</p>`}
<form method="post" action="/login" class="card login">
<input type="hidden" name="_login" value="${token}">
<label>Account <small>(leave empty with an API key)</small><input name="account" autocomplete="username"></label>
<label>Password or API key<input name="secret" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form>
<p class="hint">The operator logs in with the node API key (<code>&lt;data&gt;/secrets/api-key</code>) and sees every account.</p>`,
    }),
    status,
  );
}

export function registerLogin(app: FastifyInstance, ctx: DashboardContext): void {
  const open = { public: true, dashboardOpen: true };
  app.get('/login', { config: open }, async (req, reply) => (req.dashboardSession ? seeOther(reply, '/') : loginPage(reply, ctx)));

  app.post('/login', { config: open }, async (req, reply) => {
    const given = field(req.body, '_login');
    const expected = cookies(req).get(LOGIN_COOKIE);
    if (!given || !expected || !sameSecret(given, expected)) return loginPage(reply, ctx, 'The form expired or did not come from this site; try again.', 403);
    const who = await authenticate(ctx, field(req.body, 'account'), field(req.body, 'secret') ?? '');
    if (!who) return loginPage(reply, ctx, 'Wrong account, password or API key.', 401);
    const { id } = await ctx.sessions.create(who.principal, who.label);
    reply.header('set-cookie', [cookie(ctx, sessionCookieName(ctx), id), cookie(ctx, LOGIN_COOKIE, '', '; Max-Age=0')]);
    return seeOther(reply, '/');
  });

  // Guarded like every other form: a forged logout is harmless, but one rule for all posts is simpler to trust.
  app.post('/logout', { config: { public: true } }, async (req, reply) => {
    await ctx.sessions.destroy(cookies(req).get(sessionCookieName(ctx)));
    reply.header('set-cookie', cookie(ctx, sessionCookieName(ctx), '', '; Max-Age=0'));
    return seeOther(reply, '/login');
  });
}
