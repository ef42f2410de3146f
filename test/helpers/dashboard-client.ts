/*
 * A logged-in dashboard client over plain HTTP (fetch) against a running node:
 * a cookie jar of one (the session), and the CSRF token of the last page it
 * read, for the e2e tests that check what a session may see and do.
 */
import assert from 'node:assert/strict';

export class DashboardClient {
  cookie = '';
  csrf = '';
  private constructor(readonly base: string) {}

  /** Logs in (`account` empty for a key, the account id for its password) and reads `/` for a CSRF token. */
  static async login(base: string, account: string, secret: string): Promise<DashboardClient> {
    const c = new DashboardClient(base);
    const form = await fetch(`${base}/login`);
    const loginCookie = form.headers.getSetCookie().map((s) => s.split(';')[0]).join('; ');
    const token = /name="_login" value="([^"]+)"/.exec(await form.text())![1]!;
    const r = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', headers: { cookie: loginCookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ _login: token, account, secret }).toString() });
    assert.equal(r.status, 303, `login of ${account || 'a key'} succeeds`);
    const session = r.headers.getSetCookie().find((s) => s.startsWith('postino_session='));
    assert.ok(session);
    assert.match(session, /HttpOnly/);
    assert.match(session, /SameSite=Strict/);
    c.cookie = session.split(';')[0]!;
    await c.get('/');
    return c;
  }

  /** `text` is the page without its CSRF tokens (random letters could spell anything a test looks for). */
  async get(route: string): Promise<{ status: number; text: string; headers: Headers }> {
    const r = await fetch(this.base + route, { redirect: 'manual', headers: { cookie: this.cookie } });
    const raw = await r.text();
    const t = /name="_csrf" value="([^"]+)"/.exec(raw)?.[1];
    if (t) this.csrf = t;
    return { status: r.status, text: raw.replace(/name="_csrf" value="[^"]+"/g, ''), headers: r.headers };
  }

  async post(route: string, fields: Record<string, string>, withCsrf = true): Promise<{ status: number; text: string; location: string | null }> {
    const body = new URLSearchParams(withCsrf ? { ...fields, _csrf: this.csrf } : fields).toString();
    const r = await fetch(this.base + route, { method: 'POST', redirect: 'manual', headers: { cookie: this.cookie, 'content-type': 'application/x-www-form-urlencoded' }, body });
    return { status: r.status, text: await r.text(), location: r.headers.get('location') };
  }
}
