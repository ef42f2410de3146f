import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../../common/config.js';
import { CLI, tempDir } from '../helpers/postino.js';

test('an empty config is valid: every key has a default (ports of DESIGN.md)', () => {
  const c = parseConfig({});
  assert.equal(c.forwarder.smtp.port, 2525);
  assert.equal(c.forwarder.admin.port, 8025);
  assert.equal(c.listener.port, 2587);
  assert.equal(c.http.port, 8080);
  assert.equal(c.sink.port, 2600);
  assert.equal(c.forwarder.smtp.maxSize, 25 * 1024 * 1024);
  assert.ok(Object.isFrozen(c.forwarder.smtp), 'deep-frozen');
});

test('every problem is reported with its key path', () => {
  try {
    parseConfig({ forwarder: { smtp: { port: 70000, allowNetworks: ['10.0.0.0/33', 'banana'] }, colour: 'red' }, listener: { tls: { certFile: '/no/such.pem' } }, sink: { port: '2600' } });
    assert.fail('should throw');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const paths = e.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, ['forwarder.colour', 'forwarder.smtp.allowNetworks.0', 'forwarder.smtp.allowNetworks.1', 'forwarder.smtp.port', 'listener.tls.certFile', 'sink.port']);
  }
});

test('postino check-config and postino up: three mistakes → three errors with key paths, exit 2, nothing bound', () => {
  const dir = tempDir('cfg');
  const file = path.join(dir, 'bad.json');
  fs.writeFileSync(file, JSON.stringify({ forwarder: { smtp: { port: 70000 } }, accounts: [{ id: 'default', networks: ['300.1.1.1/8'] }], listener: { tls: { keyFile: path.join(dir, 'missing-key.pem') } } }));
  for (const args of [['check-config', file], ['up', '--config', file]]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, POSTINO_DATA: path.join(dir, 'data') }, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 2, `${args[0]} exits 2`);
    assert.match(r.stderr, /3 configuration problems/);
    assert.match(r.stderr, /forwarder\.smtp\.port: a port is 0\.\.65535/);
    assert.match(r.stderr, /accounts\.0\.networks\.0: "300\.1\.1\.1\/8" is not an IPv4 or IPv6 address/);
    assert.match(r.stderr, /listener\.tls\.keyFile: file ".*missing-key\.pem" does not exist/);
    assert.doesNotMatch(r.stdout, /listening/);
  }
  const ok = spawnSync(process.execPath, [CLI, 'check-config', path.join(dir, 'none.json')], { encoding: 'utf8' });
  assert.equal(ok.status, 2, 'an unreadable file is an error too');
  fs.writeFileSync(path.join(dir, 'good.json'), '{"sink": {"port": 2601}}');
  const good = spawnSync(process.execPath, [CLI, 'check-config', path.join(dir, 'good.json')], { encoding: 'utf8' });
  assert.equal(good.status, 0);
});

test('accounts[].engine: defaults change no body, and mistakes are reported with their key paths', () => {
  const c = parseConfig({});
  const e = c.accounts[0]!.engine;
  assert.deepEqual({ track: e.track, footer: e.footer.enabled, dkim: e.dkim.keyFile, bounce: c.engine.bounceDomain }, { track: { opens: false, clicks: false, textLinks: false }, footer: false, dkim: null, bounce: null });
  try {
    parseConfig({ accounts: [{ id: 'acme', engine: { stream: 'promo', track: { open: true }, dkim: { keyFile: '/nonexistent/key.pem' } } }], engine: { publicUrl: 'not a url' } });
    assert.fail('should not validate');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const paths = err.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, ['accounts.0.engine.dkim.keyFile', 'accounts.0.engine.stream', 'accounts.0.engine.track.open', 'engine.publicUrl']);
  }
});

test('postino check-config: a secret named by an *Env key that is unset or under 32 bytes is a problem with its key path, exit 2', () => {
  const dir = tempDir('cfg-env');
  const file = path.join(dir, 'env.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      forwarder: { admin: { tokenEnv: 'POSTINO_T_ADMIN' }, smtp: { auth: { users: [{ username: 'shop', passwordEnv: 'POSTINO_T_SHOP' }] } } },
      http: { apiKeyEnv: 'POSTINO_T_API' },
    }),
  );
  const base: NodeJS.ProcessEnv = { ...process.env, POSTINO_DATA: path.join(dir, 'data') };
  for (const k of ['POSTINO_T_ADMIN', 'POSTINO_T_SHOP', 'POSTINO_T_API']) delete base[k];
  const run = (env: NodeJS.ProcessEnv) => spawnSync(process.execPath, [CLI, 'check-config', file], { env: { ...base, ...env }, encoding: 'utf8', timeout: 20_000 });

  const bad = run({ POSTINO_T_SHOP: 'x'.repeat(31), POSTINO_T_API: 'k'.repeat(32) });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /2 configuration problems/);
  assert.match(bad.stderr, /forwarder\.admin\.tokenEnv: environment variable POSTINO_T_ADMIN is not set/);
  assert.match(bad.stderr, /forwarder\.smtp\.auth\.users\.0\.passwordEnv: environment variable POSTINO_T_SHOP holds 31 bytes; a secret needs at least 32/);
  assert.doesNotMatch(bad.stderr, /http\.apiKeyEnv/, 'a 32-byte key is enough');
  assert.doesNotMatch(bad.stderr + bad.stdout, /x{31}/, 'a secret is never printed');

  const good = run({ POSTINO_T_ADMIN: 'a'.repeat(40), POSTINO_T_SHOP: 'é'.repeat(16), POSTINO_T_API: 'k'.repeat(32) });
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /: ok/);
});
