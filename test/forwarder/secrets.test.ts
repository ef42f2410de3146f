/*
 * The relay URL's password (smtp://user:pass@listener, the login of a listener
 * account that has users) never shows: not in a log line of the forwarder,
 * not in its spool (LevelDB values and blob files), not in an admin API
 * answer — while the listener is down, when it takes mail and when it defers
 * (quota).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../common/config.js';
import { hashPassword } from '../../common/password-hash.js';
import { redactUrl, redactUrlsIn } from '../../common/redact.js';
import { ensureDevTls, secretsDir } from '../../common/secrets.js';
import { Store } from '../../common/store.js';
import { admin, forwarderConfig, sleep, startForwarderProcess } from '../helpers/forwarder.js';
import { startTestListener } from '../helpers/listener.js';
import { freePorts } from '../helpers/ports.js';
import { tempDir } from '../helpers/postino.js';
import { open, send } from '../helpers/smtp-session.js';

const PASSWORD = 'Pw-9f3@x/y:z s3cret';

test('redactUrl hides the password (even one with @, / and :) and keeps the user', () => {
  const url = `smtp://fwd:${encodeURIComponent(PASSWORD)}@127.0.0.1:2587`;
  assert.equal(redactUrl(url), 'smtp://fwd:***@127.0.0.1:2587');
  assert.equal(redactUrl('smtp://127.0.0.1:2587'), 'smtp://127.0.0.1:2587');
  assert.equal(redactUrlsIn('connect to smtp://u:p@ss@host:25 failed'), 'connect to smtp://u:***@host:25 failed');
});

test('a config problem with a relay URL names the URL without its password', () => {
  const url = `smtp://fwd:${encodeURIComponent(PASSWORD)}@127.0.0.1:99999`;
  assert.throws(
    () => parseConfig({ forwarder: { relay: { urls: [url] } } }),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0]!.message.includes('fwd:***@') && !leaks(e.report()),
  );
});

function leaks(text: string): boolean {
  return text.includes(PASSWORD) || text.includes(encodeURIComponent(PASSWORD)) || text.includes('s3cret');
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('the relay password is in no log line, spool value or admin answer: down, delivered, deferred', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('fwd-secrets');
  const listenerDir = tempDir('fwd-secrets-listener');
  const tlsPaths = await ensureDevTls(secretsDir(listenerDir));
  const [listenerPort] = await freePorts(1);
  const url = `smtp://fwd:${encodeURIComponent(PASSWORD)}@127.0.0.1:${listenerPort}`;
  const { config, ports } = await forwarderConfig([url], {
    log: { level: 'debug' },
    forwarder: { relay: { requireTls: true, caFile: tlsPaths.caFile, serverName: 'localhost', probeScheduleSeconds: [1] }, retry: { scheduleSeconds: [60] } },
  });
  const fwd = await startForwarderProcess(dataDir, config);
  const answers: string[] = [];
  const ask = async (method: string, route: string): Promise<unknown> => {
    const r = await admin(dataDir, ports.admin, method, route);
    answers.push(JSON.stringify(r.body));
    return r.body;
  };
  let listener: Awaited<ReturnType<typeof startTestListener>> | undefined;
  try {
    const app = await open(ports.smtp);
    const msg = (subject: string, extra = ''): string => `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: ${subject}\r\n${extra}\r\n\r\nHello.`;
    // 1. The listener is down: held, relay down (logged, in /status).
    assert.match(await send(app, 'shop@example.org', ['ada@example.com'], msg('one')), /^250 /);
    await waitFor('relay down', async () => ((await ask('GET', '/status')) as { relays: Array<{ state: string }> }).relays[0]!.state === 'down');
    // 2. The listener comes up (an account with a user: AUTH over TLS), takes one message per hour.
    const passwordHash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 });
    listener = await startTestListener(
      { listener: { port: listenerPort }, accounts: [{ id: 'acme', networks: ['127.0.0.1/32'], listener: { users: [{ username: 'fwd', passwordHash }], messagesPerHour: 1 } }] },
      { dataDir: listenerDir },
    );
    await waitFor('first message delivered', async () => (await listener!.messages()).length === 1);
    // 3. Over quota (452): deferred, the last error (with its relay) in the spool.
    assert.match(await send(app, 'shop@example.org', ['ada@example.com'], msg('two')), /^250 /);
    await waitFor('a deferred message', async () => {
      const q = (await ask('GET', '/queue')) as { messages: Array<{ lastError: unknown }> };
      return q.messages.some((m) => m.lastError !== null);
    });
    const q = (await ask('GET', '/queue')) as { messages: Array<{ lastError: { relay?: string } | null }> };
    assert.ok(q.messages.some((m) => m.lastError?.relay === `smtp://fwd:***@127.0.0.1:${listenerPort}`), 'the relay is named, without its password');
    await ask('GET', '/status');
    await ask('GET', '/metrics');
    app.close();
  } finally {
    await fwd.stop();
    await listener?.close();
  }
  assert.ok(fwd.lines.some((l) => l.includes('relay-down')) && fwd.lines.some((l) => l.includes('"relayed"')), 'the relay is logged down and up');
  const leaked = fwd.lines.filter(leaks);
  assert.deepEqual(leaked, [], 'no log line holds the password');
  assert.deepEqual(answers.filter(leaks), [], 'no admin answer holds the password');
  // The spool, read after the stop: every LevelDB value and every blob file.
  const store = await Store.open(path.join(dataDir, 'forwarder'));
  try {
    let values = 0;
    for await (const [k, v] of store.db.iterator()) {
      values++;
      assert.ok(!leaks(v.toString('utf8')), `spool value ${k} holds the password`);
    }
    assert.ok(values > 0);
    for (const f of fs.readdirSync(store.blobDir)) assert.ok(!leaks(fs.readFileSync(path.join(store.blobDir, f), 'latin1')), `blob ${f} holds the password`);
  } finally {
    await store.close();
  }
});
