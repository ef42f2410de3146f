/*
 * SIGHUP to `postino hosted` re-reads the listener's certificate: new sessions
 * get the new one, a session already in TLS goes on undisturbed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ensureDevTls } from '../../common/secrets.js';
import { freePorts } from '../helpers/ports.js';
import { startPostino, tempDir } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';
import { message, open, send } from '../helpers/smtp-session.js';

test('SIGHUP reloads the TLS pair without dropping sessions', { timeout: 60_000 }, async () => {
  const dir = tempDir('tls-reload');
  const a = await ensureDevTls(path.join(dir, 'a'));
  const b = await ensureDevTls(path.join(dir, 'b'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  fs.copyFileSync(a.certFile, certFile);
  fs.copyFileSync(a.keyFile, keyFile);
  const caA = fs.readFileSync(a.caFile, 'utf8');
  const caB = fs.readFileSync(b.caFile, 'utf8');
  const [smtp, http, sink] = await freePorts(3);
  const config = path.join(dir, 'hosted.json');
  fs.writeFileSync(config, JSON.stringify({ listener: { port: smtp, tls: { certFile, keyFile } }, http: { port: http }, feedback: { port: null }, delivery: { relays: [`smtp://127.0.0.1:${sink}`] } }));
  const hosted = await startPostino(['hosted', '--config', config], path.join(dir, 'data'), 2);
  try {
    const old = await open(smtp!, { tls: caA });

    fs.copyFileSync(b.certFile, certFile);
    fs.copyFileSync(b.keyFile, keyFile);
    process.kill(hosted.child.pid!, 'SIGHUP');
    for (let i = 0; i < 100 && !hosted.lines.some((l) => l.includes('"event":"tls-reloaded"')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(hosted.lines.some((l) => l.includes('"event":"tls-reloaded"')), 'the listener logged the reload');

    const fresh = await open(smtp!, { tls: caB });
    assert.match(await send(fresh, 'shop@example.org', ['a@example.com'], message('new cert')), /^250 /, 'a new session verifies against the new CA');
    fresh.close();
    const stale = await RawSmtp.connect(smtp!);
    await stale.reply();
    await stale.cmd('EHLO x.test');
    assert.match(await stale.cmd('STARTTLS'), /^220 /);
    await assert.rejects(stale.startTls({ ca: caA }), 'the old CA no longer verifies new sessions');
    stale.close();

    assert.match(await send(old, 'shop@example.org', ['a@example.com'], message('old session')), /^250 /, 'the session opened before the reload goes on');
    old.close();
  } finally {
    assert.equal(await hosted.stop(), 0);
  }
});
