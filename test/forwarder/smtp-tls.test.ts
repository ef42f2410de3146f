/*
 * The forwarder's intake offers STARTTLS to apps with a configured pair and can
 * require it (forwarder.smtp.tls, forwarder.smtp.requireTls), and shares the
 * listener's ESMTP parameter checks (555 5.5.4, 553 5.6.7): raw SMTP against
 * `postino forwarder`. Config errors that would fail open are refused.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../common/config.js';
import { ensureDevTls, secretsDir } from '../../common/secrets.js';
import { forwarderConfig, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';
import { message, open, send } from '../helpers/smtp-session.js';

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems.map((p) => `${p.path}: ${p.message}`);
  }
}

test('fail closed: AUTH required without users, TLS required without a pair, half a pair', async () => {
  const dir = await ensureDevTls(tempDir('fwd-tls-cfg'));
  assert.deepEqual(problems({ forwarder: { smtp: { auth: { required: true } } } }).map((p) => p.split(':')[0]), ['forwarder.smtp.auth.required']);
  assert.deepEqual(problems({ forwarder: { smtp: { requireTls: true } } }).map((p) => p.split(':')[0]), ['forwarder.smtp.requireTls']);
  assert.deepEqual(problems({ forwarder: { smtp: { tls: { certFile: dir.certFile } } } }).map((p) => p.split(':')[0]), ['forwarder.smtp.tls.keyFile']);
  assert.deepEqual(problems({ forwarder: { smtp: { requireTls: true, tls: { certFile: dir.certFile, keyFile: dir.keyFile }, auth: { required: true, users: [{ username: 'app', passwordEnv: 'APP_PW' }] } } } }), []);
});

test('STARTTLS offered with the configured pair; MAIL before it gets 530 with requireTls; parameters checked after it', { timeout: 30_000 }, async () => {
  const dataDir = tempDir('fwd-tls');
  const pair = await ensureDevTls(secretsDir(tempDir('fwd-tls-pair')));
  const { config, ports } = await forwarderConfig(['smtp://127.0.0.1:9'], { forwarder: { smtp: { requireTls: true, tls: { certFile: pair.certFile, keyFile: pair.keyFile } } } });
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const raw = await RawSmtp.connect(ports.smtp);
    try {
      await raw.reply();
      const ehlo = await raw.cmd('EHLO app.test');
      assert.match(ehlo, /^250[ -]STARTTLS/m);
      assert.match(ehlo, /^250[ -]DSN/m, 'the forwarder offers DSN (the listener does not)');
      assert.match(await raw.cmd('MAIL FROM:<shop@example.org>'), /^530 5\.7\.0 /);
    } finally {
      raw.close();
    }
    const c = await open(ports.smtp, { tls: fs.readFileSync(pair.caFile, 'utf8') });
    try {
      assert.match(await c.cmd('MAIL FROM:<shop@example.org> FOO=BAR'), /^555 5\.5\.4 /);
      assert.match(await c.cmd('MAIL FROM:<pelé@example.org>'), /^553 5\.6\.7 /);
      assert.match(await send(c, 'shop@example.org', ['ada@example.com'], message('over TLS')), /^250 /);
    } finally {
      c.close();
    }
  } finally {
    await fwd.stop();
  }
});

test('without a pair (the default outside `up`) STARTTLS is not offered', { timeout: 30_000 }, async () => {
  const dataDir = tempDir('fwd-notls');
  const { config, ports } = await forwarderConfig(['smtp://127.0.0.1:9']);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const raw = await RawSmtp.connect(ports.smtp);
    try {
      await raw.reply();
      assert.doesNotMatch(await raw.cmd('EHLO app.test'), /STARTTLS/);
    } finally {
      raw.close();
    }
  } finally {
    await fwd.stop();
  }
});
