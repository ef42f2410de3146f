/*
 * Ctrl-C semantics: SIGTERM while a client is in the middle of DATA — the
 * transaction completes with 250, the process exits 0, and after a restart the
 * message is delivered. Also: secrets are created 0600 and the CLI finds them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CLI, startUp, tempDir, upConfig } from '../helpers/postino.js';
import { waitForSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

test('SIGTERM finishes the SMTP transaction in progress, exits 0, and nothing is lost', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('stop');
  const { config, ports } = await upConfig();
  const up = await startUp(dataDir, config);

  for (const name of ['admin-token', 'api-key', 'signing-keys', 'dev-key.pem', 'dev-cert.pem', 'dev-ca.pem']) {
    const st = fs.statSync(path.join(dataDir, 'secrets', name));
    assert.equal(st.mode & 0o777, 0o600, `${name} is 0600`);
  }
  const status = spawnSync(process.execPath, [CLI, 'forwarder', 'status', '--admin', `http://127.0.0.1:${ports.admin}`], { env: { ...process.env, POSTINO_DATA: dataDir }, encoding: 'utf8' });
  assert.equal(status.status, 0, status.stderr);
  assert.match(status.stdout, /^queued\s+0$/m, 'the CLI found the admin token in data/secrets');
  const noToken = spawnSync(process.execPath, [CLI, 'forwarder', 'status', '--admin', `http://127.0.0.1:${ports.admin}`], { env: { ...process.env, POSTINO_DATA: tempDir('empty') }, encoding: 'utf8' });
  assert.equal(noToken.status, 2, 'without a token the CLI says so');
  assert.match(noToken.stderr, /no admin token/);

  const c = await RawSmtp.connect(ports.forwarder);
  assert.match(await c.reply(), /^220 /);
  assert.match(await c.cmd('EHLO app.test'), /^250/);
  assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250/);
  assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250/);
  assert.match(await c.cmd('DATA'), /^354/);
  c.write('From: shop@example.org\r\nTo: ada@example.com\r\nX-Test-Id: in-flight\r\nSubject: in flight\r\n\r\nfirst half\r\n');
  process.kill(-up.child.pid!, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  c.write('second half\r\n.\r\n');
  assert.match(await c.reply(), /^250 /, 'the transaction in progress completes');
  assert.match(await c.cmd('QUIT'), /^(221|421)/);
  c.close();
  assert.equal(await up.exited, 0, 'exits 0');

  const again = await startUp(dataDir, config);
  try {
    const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.some((x) => x.testId === 'in-flight'), 30_000);
    assert.ok(sink.some((x) => x.testId === 'in-flight'), 'delivered after restart');
  } finally {
    await again.stop();
  }
});
