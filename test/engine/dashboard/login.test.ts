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
import type { FastifyInstance } from 'fastify';
import { ApiKeys, newAccountKey } from '../../../common/api-keys.js';
import { parseConfig } from '../../../common/config.js';
import { DurableQueue } from '../../../common/durable-queue.js';
import type { IntakeMeta } from '../../../common/intake-record.js';
import { createLogger } from '../../../common/log.js';
import { hashPassword } from '../../../common/password-hash.js';
import { Store } from '../../../common/store.js';
import { CaptureFolder } from '../../../engine/dashboard/capture-folder.js';
import { registerDashboard } from '../../../engine/dashboard/dashboard.js';
import { SessionStore } from '../../../engine/dashboard/sessions.js';
import { createDelivery } from '../../../engine/delivery/delivery.js';
import type { DeliveryMeta } from '../../../engine/delivery/delivery-record.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { createHostedApi } from '../../../engine/http-api.js';
import { SuppressionList } from '../../../engine/suppression.js';
import { tempDir } from '../../helpers/postino.js';

const NODE_KEY = 'node-key-'.padEnd(43, 'k');
let app: FastifyInstance;
let store: Store;
let shopKey: string;
let dir: string;

before(async () => {
  dir = tempDir('dashboard-login');
  const key = await newAccountKey();
  shopKey = key.token;
  const config = parseConfig({
    engine: { publicUrl: 'https://mail.example.net' },
    accounts: [{ id: 'default' }, { id: 'shop', apiKeys: [key.entry], dashboard: { passwordHash: await hashPassword('open sesame') } }],
  });
  const log = createLogger('test', 'silent');
  store = await Store.open(path.join(dir, 'hosted'));
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const queue = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = new SuppressionList(store);
  const delivery = await createDelivery({ config: config.delivery, accounts: config.accounts, hostname: 'test', store, queue, events, suppression, visibilityMs: 60_000, log });
  const sink = path.join(dir, 'sink');
  fs.mkdirSync(sink);
  fs.writeFileSync(path.join(dir, 'secret.eml'), 'Subject: outside the capture folder\r\n\r\nx\r\n');
  const apiKeys = new ApiKeys(NODE_KEY, config.accounts);
  app = createHostedApi((t) => apiKeys.principal(t), log);
  registerDashboard(app, { config: config.dashboard, secureCookies: true, accounts: config.accounts, apiKeys, events, intake, deliveryQueue: queue, delivery, suppressions: { store, suppression }, capture: CaptureFolder.open(sink), sessions: new SessionStore(60_000) }, log);
  await app.ready();
});

after(async () => {
  await app.close();
  await store.close();
});

async function login(account: string, secret: string): Promise<{ status: number; cookies: string[] }> {
  const form = await app.inject({ method: 'GET', url: '/login' });
  const loginCookie = ([] as string[]).concat(form.headers['set-cookie'] ?? []);
  assert.match(loginCookie[0] ?? '', /^postino_login=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
  const token = /name="_login" value="([^"]+)"/.exec(form.body)![1]!;
  const r = await app.inject({ method: 'POST', url: '/login', headers: { cookie: loginCookie[0]!.split(';')[0]!, 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ _login: token, account, secret }).toString() });
  return { status: r.statusCode, cookies: ([] as string[]).concat(r.headers['set-cookie'] ?? []) };
}

test('with an https publicUrl the session cookie is Secure, HttpOnly, SameSite=Strict and __Host- prefixed', async () => {
  const r = await login('', NODE_KEY);
  assert.equal(r.status, 303);
  const session = r.cookies.find((c) => c.startsWith('__Host-postino_session='));
  assert.ok(session, r.cookies.join(' | '));
  assert.match(session, /^__Host-postino_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
  const page = await app.inject({ method: 'GET', url: '/', headers: { cookie: session.split(';')[0]! } });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /class="who">operator</);
  // The same id without the prefix is not a session (a cookie planted by a sibling host over http).
  const planted = await app.inject({ method: 'GET', url: '/', headers: { cookie: session.split(';')[0]!.replace('__Host-', '') } });
  assert.equal(planted.statusCode, 303);
});

test('an account logs in with its password or its API key, as itself; wrong secrets and other accounts\' passwords do not', async () => {
  const byPassword = await login('shop', 'open sesame');
  assert.equal(byPassword.status, 303);
  const page = await app.inject({ method: 'GET', url: '/', headers: { cookie: byPassword.cookies[0]!.split(';')[0]! } });
  assert.match(page.body, /class="who">shop</);
  assert.match(page.body, /Your queue/);
  const byKey = await login('default', shopKey); // an account key logs into its own account whatever the form says
  assert.equal(byKey.status, 303);
  assert.match((await app.inject({ method: 'GET', url: '/', headers: { cookie: byKey.cookies[0]!.split(';')[0]! } })).body, /class="who">shop</);
  assert.equal((await login('shop', 'wrong')).status, 401);
  assert.equal((await login('default', 'open sesame')).status, 401, 'the password is the shop\'s, not default\'s');
  assert.equal((await login('', '')).status, 401);
});

test('captured-copy routes take sink ids only: no way out of the capture folder', async () => {
  const r = await login('', NODE_KEY);
  const cookie = r.cookies.find((c) => c.startsWith('__Host-'))!.split(';')[0]!;
  for (const id of ['..%2Fsecret', '..', '%2e%2e%2fsecret', 'secret']) {
    const res = await app.inject({ method: 'GET', url: `/captured/${id}/raw.eml`, headers: { cookie } });
    // `..` is resolved before routing (to /raw.eml: no such route, 401 at the API's gate); the others reach the route: 404.
    assert.equal(res.statusCode, id === '..' ? 401 : 404, id);
    assert.doesNotMatch(res.body, /outside the capture folder/);
  }
});
