/*
 * Per-account API keys on a real node (`postino up`): keys made by the built
 * CLI (`postino hosted api-key new`), two accounts each sending a message over
 * SMTP from its own network, and every account-facing route asked with each
 * key: an account key sees and changes its own account only (403 when it
 * names another), the node key sees all, node-wide routes refuse account keys,
 * a wrong or removed-looking key is 401.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { PostinoEvent } from '../../common/events.js';
import { until } from '../helpers/fake-clock.js';
import { newApiKey, startUp, tempDir, upConfig } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

async function send(port: number, from: string, localAddress: string, subject: string): Promise<void> {
  const c = await RawSmtp.connect(port, '127.0.0.1', localAddress);
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    assert.match(await c.cmd(`MAIL FROM:<${from}>`), /^250/);
    assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    assert.match(await c.cmd(`From: ${from}\r\nTo: ada@example.com\r\nSubject: ${subject}\r\n\r\nhello\r\n.`), /^250/);
  } finally {
    c.close();
  }
}

test('an account API key sees and changes its own account only; node-wide routes need the node key', { timeout: 90_000 }, async () => {
  const a = newApiKey('shop');
  const b = newApiKey('crm');
  const dataDir = tempDir('account-keys');
  const { config, ports } = await upConfig(() => ({
    accounts: [
      { id: 'default', networks: ['127.0.0.1/32', '::1/128'] },
      { id: 'shop', networks: ['127.0.0.2/32'], apiKeys: [a.entry], listener: { requireTls: false } },
      { id: 'crm', networks: ['127.0.0.3/32'], apiKeys: [b.entry], listener: { requireTls: false } },
    ],
  }));
  const up = await startUp(dataDir, config);
  const api = `http://127.0.0.1:${ports.http}`;
  const nodeKey = fs.readFileSync(path.join(dataDir, 'secrets', 'api-key'), 'utf8').trim();
  const call = (key: string, method: string, route: string, body?: unknown): Promise<Response> =>
    fetch(api + route, { method, headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? null : JSON.stringify(body) });
  const events = async (key: string, query = ''): Promise<PostinoEvent[]> => {
    const r = await call(key, 'GET', `/api/events?limit=1000${query}`);
    assert.equal(r.status, 200);
    const text = (await r.text()).trim();
    return text ? text.split('\n').map((l) => JSON.parse(l) as PostinoEvent) : [];
  };
  try {
    await send(ports.listener, 'news@shop.example', '127.0.0.2', 'from shop');
    await send(ports.listener, 'info@crm.example', '127.0.0.3', 'from crm');
    await until(async () => (await events(nodeKey, '&type=delivered')).length >= 2, 'both messages delivered', 30_000);

    // Events: each key sees its own account's, the node key both.
    const all = await events(nodeKey);
    assert.deepEqual(new Set(all.map((e) => e.account)), new Set(['shop', 'crm']));
    const shopSeen = await events(a.token);
    assert.ok(shopSeen.length > 0 && shopSeen.every((e) => e.account === 'shop'), 'shop key sees only shop events');
    assert.equal(shopSeen.length, all.filter((e) => e.account === 'shop').length);
    assert.ok((await events(b.token)).every((e) => e.account === 'crm'));
    assert.equal((await call(a.token, 'GET', '/api/events?account=crm')).status, 403);
    assert.equal((await events(nodeKey, '&account=crm')).every((e) => e.account === 'crm'), true);

    // Suppressions: own account implied, another one refused, nothing of it readable.
    assert.equal((await call(a.token, 'POST', '/api/suppressions', { address: 'gone@example.com' })).status, 201);
    assert.equal((await call(a.token, 'POST', '/api/suppressions', { account: 'crm', address: 'x@example.com' })).status, 403);
    assert.equal((await call(b.token, 'POST', '/api/suppressions', { address: 'crm-gone@example.com' })).status, 201);
    const listed = (await (await call(a.token, 'GET', '/api/suppressions')).json()) as { suppressions: Array<{ account: string; address: string }> };
    assert.deepEqual(listed.suppressions.map((s) => `${s.account}/${s.address}`), ['shop/gone@example.com']);
    assert.equal((await call(a.token, 'GET', '/api/suppressions?account=crm')).status, 403);
    assert.equal((await call(a.token, 'DELETE', '/api/suppressions?account=crm&address=crm-gone@example.com')).status, 403);
    const exported = await (await call(a.token, 'GET', '/api/suppressions/export')).text();
    assert.ok(!exported.includes('crm'), exported);
    const nodeList = (await (await call(nodeKey, 'GET', '/api/suppressions')).json()) as { suppressions: unknown[] };
    assert.equal(nodeList.suppressions.length, 2);

    // Kill-switch: an account key pauses its own account, never the node or another account.
    const paused = (await (await call(a.token, 'POST', '/api/pause')).json()) as { paused: { global: boolean; accounts: string[] } };
    assert.deepEqual(paused.paused, { global: false, accounts: ['shop'] });
    assert.equal((await call(a.token, 'POST', '/api/pause?account=crm')).status, 403);
    assert.equal((await call(a.token, 'POST', '/api/resume')).status, 200);

    // Node-wide routes.
    for (const [method, route] of [['GET', '/api/queue'], ['GET', '/api/failed'], ['GET', '/metrics'], ['POST', '/api/failed/x/retry']] as const) {
      assert.equal((await call(a.token, method, route)).status, 403, `${method} ${route} with an account key`);
    }
    assert.equal((await call(nodeKey, 'GET', '/api/queue')).status, 200);

    // Wrong keys: a valid-looking key whose secret is wrong, an unknown id, garbage.
    const forged = a.token.slice(0, -4) + (a.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    for (const k of [forged, `pk_${'0'.repeat(12)}_${'A'.repeat(43)}`, 'nonsense']) assert.equal((await call(k, 'GET', '/api/events')).status, 401);
  } finally {
    await up.stop();
  }
});
