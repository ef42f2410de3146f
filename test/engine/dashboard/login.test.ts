/*
 * Dashboard login on the real hosted HTTP app (createHostedApi + registerDashboard over a
 * real store, event log and delivery stage, not started): cookie flags with an https
 * publicUrl (Secure, the __Host- prefix), who may log in with what, and that a captured-copy
 * route takes sink ids only (no path out of the capture folder).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { newAccountKey } from '../../../common/api-keys.js';
import { hashPassword } from '../../../common/password-hash.js';
import { NODE_KEY, startDashboardApp, type DashboardApp } from '../../helpers/dashboard-app.js';

let d: DashboardApp;
let shopKey: string;

before(async () => {
  const key = await newAccountKey();
  shopKey = key.token;
  d = await startDashboardApp({
    engine: { publicUrl: 'https://mail.example.net' },
    accounts: [{ id: 'default' }, { id: 'shop', apiKeys: [key.entry], dashboard: { passwordHash: await hashPassword('open sesame') } }],
  });
  fs.writeFileSync(path.join(d.dir, 'secret.eml'), 'Subject: outside the capture folder\r\n\r\nx\r\n');
});

after(async () => {
  await d.close();
});

async function login(account: string, secret: string): Promise<{ status: number; cookies: string[] }> {
  const r = await d.login(secret, account);
  assert.match(r.cookies[0] ?? '', /^postino_login=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
  return { status: r.status, cookies: r.cookies.slice(1) };
}

test('with an https publicUrl the session cookie is Secure, HttpOnly, SameSite=Strict and __Host- prefixed', async () => {
  const r = await login('', NODE_KEY);
  assert.equal(r.status, 303);
  const session = r.cookies.find((c) => c.startsWith('__Host-postino_session='));
  assert.ok(session, r.cookies.join(' | '));
  assert.match(session, /^__Host-postino_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
  const page = await d.app.inject({ method: 'GET', url: '/', headers: { cookie: session.split(';')[0]! } });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /class="who">operator</);
  // The same id without the prefix is not a session (a cookie planted by a sibling host over http).
  const planted = await d.app.inject({ method: 'GET', url: '/', headers: { cookie: session.split(';')[0]!.replace('__Host-', '') } });
  assert.equal(planted.statusCode, 303);
});

test('an account logs in with its password or its API key, as itself; wrong secrets and other accounts\' passwords do not', async () => {
  const byPassword = await login('shop', 'open sesame');
  assert.equal(byPassword.status, 303);
  const page = await d.app.inject({ method: 'GET', url: '/', headers: { cookie: byPassword.cookies[0]!.split(';')[0]! } });
  assert.match(page.body, /class="who">shop</);
  assert.match(page.body, /Your queue/);
  const byKey = await login('default', shopKey); // an account key logs into its own account whatever the form says
  assert.equal(byKey.status, 303);
  assert.match((await d.app.inject({ method: 'GET', url: '/', headers: { cookie: byKey.cookies[0]!.split(';')[0]! } })).body, /class="who">shop</);
  assert.equal((await login('shop', 'wrong')).status, 401);
  assert.equal((await login('default', 'open sesame')).status, 401, 'the password is the shop\'s, not default\'s');
  assert.equal((await login('', '')).status, 401);
});

test('captured-copy routes take sink ids only: no way out of the capture folder', async () => {
  const r = await login('', NODE_KEY);
  const cookie = r.cookies.find((c) => c.startsWith('__Host-'))!.split(';')[0]!;
  for (const id of ['..%2Fsecret', '..', '%2e%2e%2fsecret', 'secret']) {
    const res = await d.app.inject({ method: 'GET', url: `/captured/${id}/raw.eml`, headers: { cookie } });
    // `..` is resolved before routing (to /raw.eml: no such route, 401 at the API's gate); the others reach the route: 404.
    assert.equal(res.statusCode, id === '..' ? 401 : 404, id);
    assert.doesNotMatch(res.body, /outside the capture folder/);
  }
});

test('an account pauses and resumes its own delivery from the overview; the switch says who and why', async () => {
  const r = await login('shop', 'open sesame');
  const cookie = r.cookies.find((c) => c.startsWith('__Host-'))!.split(';')[0]!;
  const get = async (): Promise<string> => (await d.app.inject({ method: 'GET', url: '/', headers: { cookie } })).body;
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await get())![1]!;
  const post = (url: string, fields: Record<string, string>) =>
    d.app.inject({ method: 'POST', url, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ ...fields, _csrf: csrf }).toString() });
  assert.equal((await post('/pause', { reason: 'bad <b>list</b> import' })).statusCode, 303);
  const page = await get();
  assert.match(page, /paused<\/strong> <small>since [^<]* by shop \(dashboard\): “bad &lt;b&gt;list&lt;\/b&gt; import”/, 'reason shown, escaped');
  assert.equal((await post('/pause', { account: 'default' })).statusCode, 403, 'not another account');
  assert.equal((await post('/resume', {})).statusCode, 303);
  assert.doesNotMatch(await get(), /paused<\/strong>/);
});
