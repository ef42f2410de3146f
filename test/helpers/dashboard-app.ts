/*
 * The hosted HTTP app with the dashboard over a real store, event log, queues and delivery
 * stage (not started: nothing is sent), for tests that drive the pages with fastify inject.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ApiKeys } from '../../common/api-keys.js';
import { parseConfig } from '../../common/config.js';
import { DurableQueue } from '../../common/durable-queue.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import { createLogger } from '../../common/log.js';
import { Store } from '../../common/store.js';
import { CaptureFolder } from '../../engine/dashboard/capture-folder.js';
import { registerDashboard } from '../../engine/dashboard/dashboard.js';
import { cookiesSecure } from '../../engine/dashboard/login.js';
import { MemorySessionStore } from '../../engine/dashboard/sessions.js';
import { createDelivery } from '../../engine/delivery/delivery.js';
import type { DeliveryMeta } from '../../engine/delivery/delivery-record.js';
import { EventLog } from '../../engine/events/event-log.js';
import { createHostedApi } from '../../engine/http-api.js';
import { LevelSuppressionList } from '../../engine/suppression.js';
import { tempDir } from './postino.js';

export const NODE_KEY = 'node-key-'.padEnd(43, 'k');

export interface DashboardApp {
  app: FastifyInstance;
  events: EventLog;
  dir: string;
  /** A session cookie (`name=value`) after logging in with `secret` (and `account`). */
  login(secret: string, account?: string): Promise<{ status: number; cookies: string[] }>;
  close(): Promise<void>;
}

export async function startDashboardApp(raw: Record<string, unknown>): Promise<DashboardApp> {
  const dir = tempDir('dashboard-app');
  const config = parseConfig(raw);
  const log = createLogger('test', 'silent');
  const store = await Store.open(path.join(dir, 'hosted'));
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const queue = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = new LevelSuppressionList(store);
  const delivery = await createDelivery({ config: config.delivery, accounts: config.accounts, hostname: 'test', store, queue, events, suppression, visibilityMs: 60_000, log });
  const sink = path.join(dir, 'sink');
  fs.mkdirSync(sink);
  const apiKeys = new ApiKeys(NODE_KEY, config.accounts);
  const app = createHostedApi((t) => apiKeys.principal(t), log);
  registerDashboard(app, { config: config.dashboard, secureCookies: cookiesSecure(config.engine.publicUrl), accounts: config.accounts, apiKeys, events, intake, deliveryQueue: queue, delivery, suppressions: { store, suppression }, capture: CaptureFolder.open(sink), sessions: new MemorySessionStore(60_000) }, log);
  await app.ready();
  return {
    app,
    events,
    dir,
    async login(secret, account = '') {
      const form = await app.inject({ method: 'GET', url: '/login' });
      const loginCookie = ([] as string[]).concat(form.headers['set-cookie'] ?? []);
      const token = /name="_login" value="([^"]+)"/.exec(form.body)![1]!;
      const r = await app.inject({ method: 'POST', url: '/login', headers: { cookie: loginCookie[0]!.split(';')[0]!, 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ _login: token, account, secret }).toString() });
      return { status: r.statusCode, cookies: [...loginCookie, ...([] as string[]).concat(r.headers['set-cookie'] ?? [])] };
    },
    async close() {
      await app.close();
      await store.close();
    },
  };
}

/** The session cookie (`postino_session=…`) of a login with `secret`. */
export async function sessionCookie(d: DashboardApp, secret: string): Promise<string> {
  return (await d.login(secret)).cookies.find((c) => c.startsWith('postino_session='))!.split(';')[0]!;
}

/** One messages page: the event seqs listed, the pager's next link, the HTML. */
export async function messagesPage(d: DashboardApp, cookie: string, route: string): Promise<{ seqs: number[]; next: string | undefined; body: string }> {
  const r = await d.app.inject({ method: 'GET', url: route, headers: { cookie } });
  assert.equal(r.statusCode, 200, `${route}: ${r.body.slice(0, 200)}`);
  const seqs = [...r.body.matchAll(/data-seq="(\d+)"/g)].map((m) => Number(m[1]));
  const next = /<p class="pager"><a href="([^"]+)"/.exec(r.body)?.[1]?.replace(/&amp;/g, '&');
  return { seqs, next, body: r.body };
}
