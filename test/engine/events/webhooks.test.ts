/*
 * A webhook endpoint that keeps failing: retried on the configured schedule
 * with the same webhook-id, disabled after disableAfterHours with a
 * `webhook.disabled` event (what the notifier mails to the account), shown
 * disabled in the list; `enable` takes it back and its pending batch is
 * delivered under the same id. Real LevelDB, real HTTP receiver. And the
 * config: a webhook without a well-formed secret is refused with its key path.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../../common/config.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { newWebhookSecret } from '../../../engine/events/webhook-signing.js';
import { WebhookDispatcher } from '../../../engine/events/webhooks.js';
import { until } from '../../helpers/fake-clock.js';
import { tempDir } from '../../helpers/postino.js';

test('an endpoint failing past disableAfterHours is disabled with an event; enable delivers its batch under the same id', { timeout: 60_000 }, async () => {
  let answer = 500;
  const calls: Array<{ id: string; status: number }> = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      calls.push({ id: String(req.headers['webhook-id']), status: answer });
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`;
  const config = parseConfig({
    accounts: [{ id: 'shop', webhooks: [{ id: 'crm', url, secret: newWebhookSecret() }] }],
    // 1.8 s instead of 3 days, retries every 0.2 s: the same logic on a test's time scale.
    events: { webhooks: { retrySeconds: [0.2], disableAfterHours: 0.0005 } },
  });
  const store = await Store.open(tempDir('webhooks'));
  const events = await EventLog.open(store);
  const hooks = new WebhookDispatcher({ store, events, config: config.events.webhooks, accounts: config.accounts, env: {}, log: createLogger('test', 'silent') });
  await hooks.start();
  try {
    await events.append([{ type: 'delivered', account: 'shop', recipient: 'a@example.com' }, { type: 'delivered', account: 'other', recipient: 'b@example.com' }]);
    await until(() => hooks.list('shop')[0]!.disabled !== null, 'the endpoint disabled', 20_000);
    assert.ok(calls.length >= 3, `${calls.length} attempts`);
    assert.equal(new Set(calls.map((c) => c.id)).size, 1, 'every retry under the same webhook-id');
    const [ev] = await events.read(0, 10, (e) => e.type === 'webhook.disabled');
    assert.equal(ev!.account, 'shop');
    assert.match(ev!.reason!, /webhook crm .* disabled: failing since .* attempts; last: HTTP 500/);
    const view = hooks.list('shop')[0]!;
    assert.equal(view.pending!.events, 1, "only the account's own event is in its batch");
    const n = calls.length;
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(calls.length, n, 'a disabled endpoint is not called');

    answer = 200;
    await hooks.enable('shop', 'crm');
    // Two batches follow: the pending one, then the account's own webhook.disabled event, written
    // after the pending batch was cut. Waiting for both makes the count exact (reading it as soon as
    // the pending batch left saw 1 or 2 depending on timing).
    await until(() => hooks.list('shop')[0]!.delivered === 2, 'the pending batch and the webhook.disabled one delivered', 10_000);
    const accepted = calls.filter((c) => c.status === 200);
    assert.deepEqual(accepted[0], { id: calls[0]!.id, status: 200 }, 'the pending batch first, under its first id');
    assert.equal(accepted.length, 2, 'each batch delivered once');
    assert.notEqual(accepted[1]!.id, calls[0]!.id, 'the next batch has an id of its own');
    assert.equal(hooks.list('shop')[0]!.pending, null);
    assert.equal(hooks.list('shop')[0]!.disabled, null);
    assert.equal(hooks.list('shop')[0]!.delivered, 2);
  } finally {
    await hooks.stop();
    await store.close();
    server.close();
  }
});

test('config: a webhook needs a whsec_ secret (or secretEnv) and an http(s) URL; problems carry their key paths', () => {
  const problems = (raw: unknown): string[] => {
    try {
      parseConfig(raw);
      return [];
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.report().split('\n');
    }
  };
  assert.ok(problems({ accounts: [{ id: 'a', webhooks: [{ id: 'x', url: 'https://crm.example/hook', secret: 'hunter2' }] }] }).some((l) => /accounts\.0\.webhooks\.0\.secret/.test(l)));
  assert.ok(problems({ accounts: [{ id: 'a', webhooks: [{ id: 'x', url: 'https://crm.example/hook' }] }] }).some((l) => /accounts\.0\.webhooks\.0\.secret: a webhook needs secret or secretEnv/.test(l)));
  assert.ok(problems({ accounts: [{ id: 'a', webhooks: [{ id: 'x', url: 'ftp://crm.example/', secretEnv: 'S' }] }] }).some((l) => /accounts\.0\.webhooks\.0\.url/.test(l)));
  assert.ok(problems({ events: { webhooks: { retrySeconds: [] } } }).some((l) => /events\.webhooks\.retrySeconds/.test(l)));
  const twice = { id: 'x', url: 'https://crm.example/hook', secretEnv: 'S' };
  assert.ok(problems({ accounts: [{ id: 'a', webhooks: [twice, twice] }] }).some((l) => /accounts\.0\.webhooks\.1\.id: webhook id "x" is used twice/.test(l)));
  assert.deepEqual(problems({ accounts: [{ id: 'a', webhooks: [{ id: 'x', url: 'https://crm.example/hook', secretEnv: 'CRM_WEBHOOK_SECRET' }] }] }), []);
});
