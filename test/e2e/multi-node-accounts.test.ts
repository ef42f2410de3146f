/*
 * Config changed at runtime through the API is the installation's, not one
 * node's (issue #14): two hosted processes on one PostgreSQL (the test's own
 * cluster). A client at 127.0.0.2 is outside the account's networks (554 at
 * connect on both nodes) until its /32 is added through node A's accounts API;
 * node B then accepts it within about a second and delivers its message; so
 * does an SMTP AUTH user added through A authenticate on B. A
 * webhook endpoint added through node A receives node B's events. PostgreSQL
 * stopped: a change through either API answers 503 and both nodes keep
 * accepting with the accounts they had; once it is back, an endpoint deleted
 * through B is gone from A.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import type { PostinoEvent } from '../../common/events.js';
import { hashPassword } from '../../common/password-hash.js';
import { migrate } from '../../common/storage/postgres/migrations.js';
import { openPool } from '../../common/storage/postgres/pool.js';
import { until } from '../helpers/fake-clock.js';
import { startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { clusterForFile } from '../helpers/postgres.js';
import { tempDir, type Running } from '../helpers/postino.js';
import { readSink } from '../helpers/sink-reader.js';
import { greeting, RawSmtp } from '../helpers/smtp-raw.js';

const pgFile = clusterForFile();
const APP = '127.0.0.2';
/** A client of the `auth` account, which takes AUTH without TLS (loopback only: this is about accounts, not TLS). */
const AUTH_APP = '127.0.0.3';
const plain = (user: string, pw: string): string => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pw}`).toString('base64')}`;

/** AUTH as `user` from AUTH_APP: the reply, and with 235 one message sent (its final reply). */
async function sendAuthed(port: number, user: string, pw: string, testId: string): Promise<string> {
  const c = await RawSmtp.connect(port, '127.0.0.1', AUTH_APP);
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    const auth = await c.cmd(plain(user, pw));
    if (!auth.startsWith('235')) return auth;
    assert.match(await c.cmd('MAIL FROM:<news@shop.example>'), /^250/);
    assert.match(await c.cmd(`RCPT TO:<${testId}@example.com>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    return `${auth} / ${await c.cmd(`From: news@shop.example\r\nTo: ${testId}@example.com\r\nSubject: hi\r\nX-Test-Id: ${testId}\r\n\r\nhello\r\n.`)}`;
  } finally {
    c.close();
  }
}

/** One message from APP; the final reply. */
async function send(port: number, testId: string): Promise<string> {
  const c = await RawSmtp.connect(port, '127.0.0.1', APP);
  try {
    assert.match(await c.reply(), /^220/);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<news@shop.example>'), /^250/);
    assert.match(await c.cmd(`RCPT TO:<${testId}@example.com>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    return await c.cmd(`From: news@shop.example\r\nTo: ${testId}@example.com\r\nSubject: hi\r\nX-Test-Id: ${testId}\r\n\r\nhello\r\n.`);
  } finally {
    c.close();
  }
}

test('two hosted processes on one PostgreSQL: a network, an SMTP AUTH user and a webhook endpoint added through A hold on B; PostgreSQL stopped: 503 on changes, both keep serving', { skip: pgFile.skip, timeout: 150_000 }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const pool = openPool({ url, poolSize: 1, connectTimeoutSeconds: 10, queryTimeoutSeconds: 30 });
  await migrate(pool);
  await pool.end();

  const events: Array<PostinoEvent & { node?: string }> = [];
  const hookServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      events.push(...((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: { events?: PostinoEvent[] } }).data.events ?? []));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hookServer.address() as net.AddressInfo).port}/hook`;

  const root = tempDir('shared-accounts');
  const { sink, sinkDir } = await startTestSink(root);
  const storage = { postgres: { url, connectTimeoutSeconds: 2, queryTimeoutSeconds: 5 } };
  const accounts = [
    { id: 'default', networks: ['127.0.0.9/32'], listener: { requireTls: false } },
    // One user in the file, so the listener offers AUTH from its start.
    { id: 'auth', networks: [`${AUTH_APP}/32`], listener: { requireTls: false, allowInsecureAuth: true, users: [{ username: 'file-app', passwordHash: await hashPassword('file-password', { N: 1024, r: 8, p: 1 }) }] } },
  ];
  const extra = { storage, accounts, events: { webhooks: { batchWaitMs: 0 } } };
  const nodes: Running[] = [];
  try {
    const a = await hostedConfig(sink.port, extra);
    const b = await hostedConfig(sink.port, extra);
    const dir = (n: string): string => {
      fs.mkdirSync(path.join(root, n));
      return path.join(root, n);
    };
    const aDir = dir('a');
    const bDir = dir('b');
    nodes.push(await startHostedProcess(aDir, a.config), await startHostedProcess(bDir, b.config));
    const base = (cfg: Record<string, unknown>): string => `http://127.0.0.1:${(cfg.http as { port: number }).port}`;
    const key = (d: string): string => fs.readFileSync(path.join(d, 'secrets', 'api-key'), 'utf8').trim();
    const api =
      (cfg: Record<string, unknown>, d: string) =>
      (route: string, method = 'GET', body?: unknown): Promise<Response> =>
        fetch(base(cfg) + route, { method, headers: { authorization: `Bearer ${key(d)}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const apiA = api(a.config, aDir);
    const apiB = api(b.config, bDir);

    assert.match(await greeting(b.listenerPort, APP), /^554 /, 'outside the networks on B');
    const added = await apiA('/api/accounts/default/networks', 'POST', { cidr: `${APP}/32` });
    assert.equal(added.status, 200, await added.clone().text());
    const t0 = Date.now();
    await until(async () => (await greeting(b.listenerPort, APP)).startsWith('220'), 'B accepts the network added through A', 10_000);
    console.log(`# hosted: a network added through node A's API accepted by node B after ${Date.now() - t0} ms`);

    // An SMTP AUTH user added through A: B authenticates it (and its message leaves) within about a second.
    assert.match(await sendAuthed(b.listenerPort, 'api-app', 'api-password-1', 'auth-before'), /^535 /, 'unknown on B before');
    const user = await apiA('/api/accounts/auth/users', 'POST', { username: 'api-app', password: 'api-password-1' });
    assert.equal(user.status, 200, await user.clone().text());
    const t1 = Date.now();
    // Watched through B's API, not by trying AUTH: five failed attempts would rate-limit this client (454).
    const usersOnB = async (): Promise<string[]> => ((await (await apiB('/api/accounts/auth/users')).json()) as { users: string[] }).users;
    await until(async () => (await usersOnB()).includes('api-app'), "the user in B's accounts", 10_000);
    console.log(`# hosted: an SMTP AUTH user added through node A's API in node B's accounts after ${Date.now() - t1} ms`);
    assert.match(await sendAuthed(b.listenerPort, 'api-app', 'api-password-1', 'auth-via-b'), /^235 .* \/ 250 /, 'B authenticates it');

    const hook = await apiA('/api/webhooks', 'POST', { url: hookUrl, account: 'default' });
    assert.equal(hook.status, 201, await hook.clone().text());
    const { id: hookId } = (await hook.json()) as { id: string };
    const listed = async (call: typeof apiA): Promise<string[]> => ((await (await call('/api/webhooks')).json()) as { webhooks: Array<{ id: string }> }).webhooks.map((w) => w.id);
    await until(async () => (await listed(apiB)).includes(hookId), "the endpoint in B's list", 10_000);

    assert.match(await send(b.listenerPort, 'via-b'), /^250 /);
    await until(() => ['via-b', 'auth-via-b'].every((t) => readSink(sinkDir).some((x) => x.testId === t)), 'delivered through B', 30_000);
    await until(() => events.some((e) => e.type === 'delivered' && e.recipient === 'via-b@example.com'), "B's delivered event posted to the endpoint added through A", 30_000);
    const nodesOf = new Set(events.filter((e) => e.recipient === 'via-b@example.com').map((e) => e.node));
    assert.equal(nodesOf.size, 1, 'posted by the node where it happened');

    await pgFile.cluster().stop();
    try {
      const unavailable = async (r: Promise<Response>, what: string): Promise<void> => {
        const res = await r;
        assert.equal(res.status, 503, `${what}: ${await res.clone().text()}`);
        assert.match(await res.text(), /SHARED_STATE_UNAVAILABLE/);
      };
      await unavailable(apiA(`/api/accounts/default/networks?cidr=${encodeURIComponent(`${APP}/32`)}`, 'DELETE'), 'a network removed through A');
      await unavailable(apiB('/api/accounts/default/networks', 'POST', { cidr: '127.0.0.8/32' }), 'a network added through B');
      await unavailable(apiB('/api/webhooks', 'POST', { url: hookUrl, account: 'default' }), 'an endpoint added through B');
      await unavailable(apiB(`/api/webhooks/${hookId}`, 'DELETE'), 'an endpoint deleted through B');
      for (const [n, port] of [['a', a.listenerPort], ['b', b.listenerPort]] as const) assert.match(await send(port, `outage-${n}`), /^250 /, `node ${n} keeps accepting with the accounts it had`);
      assert.deepEqual([await listed(apiA), await listed(apiB)], [[hookId], [hookId]], 'the endpoint still on both');
    } finally {
      await pgFile.cluster().start();
    }

    const deleted = await apiB(`/api/webhooks/${hookId}`, 'DELETE');
    assert.equal(deleted.status, 200, await deleted.clone().text());
    await until(async () => (await listed(apiA)).length === 0, 'the endpoint deleted through B gone from A', 10_000);
    await until(() => ['outage-a', 'outage-b'].every((t) => readSink(sinkDir).some((x) => x.testId === t)), 'the messages accepted during the outage delivered', 60_000);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await sink.close();
    hookServer.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
