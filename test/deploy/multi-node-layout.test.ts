/*
 * deploy/multi-node, checked by the programs that will read it: HAProxy's
 * `haproxy -c` on the balancer's config (with a real PEM in place of the
 * production certificate path), Postfix's `postconf` on the MTA relay node's
 * main.cf/master.cf (no unknown parameter), and `postino check-config` on the
 * hosted node's and the forwarder's configs. A broken copy must fail the same
 * check, so each check is known to bite. (The layout running, on loopback:
 * test/e2e/multi-node.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ensureDevTls } from '../../common/secrets.js';
import { HAPROXY, haproxyMissing } from '../helpers/haproxy.js';
import { requirePeer } from '../helpers/peers.js';
import { CLI, ROOT, tempDir } from '../helpers/postino.js';

const LAYOUT = path.join(ROOT, 'deploy', 'multi-node');
const POSTCONF = '/usr/sbin/postconf';

function run(cmd: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

test('deploy/multi-node/haproxy.cfg passes haproxy -c', async (t) => {
  const skip = haproxyMissing();
  if (skip) return t.skip(skip);
  const dir = tempDir('layout-haproxy');
  const tls = await ensureDevTls(path.join(dir, 'tls'));
  const pem = path.join(dir, 'postino.pem');
  fs.writeFileSync(pem, `${fs.readFileSync(tls.certFile, 'utf8').trim()}\n${fs.readFileSync(tls.keyFile, 'utf8').trim()}\n`);
  const text = fs.readFileSync(path.join(LAYOUT, 'haproxy.cfg'), 'utf8').replace('/etc/haproxy/postino.pem', pem).replace('/run/haproxy/admin.sock', path.join(dir, 'admin.sock'));
  const good = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(good, text);
  const r = run(HAPROXY, ['-c', '-f', good]);
  assert.equal(r.status, 0, r.output);
  assert.match(text, /send-proxy-v2 check check-send-proxy/, 'PROXY v2 to the SMTP ports, in the checks too');
  assert.match(text, /http-check send meth GET uri \/health/, 'HTTP health checks on /health');
  const bad = path.join(dir, 'broken.cfg');
  fs.writeFileSync(bad, text.replace('balance leastconn', 'balance leastconnections'));
  assert.notEqual(run(HAPROXY, ['-c', '-f', bad]).status, 0, 'a broken copy is refused');
});

test('deploy/multi-node/postfix: main.cf and master.cf parse with no unknown parameter, relay only for the hosted nodes', (t) => {
  const skip = requirePeer('postfix', POSTCONF);
  if (skip) return t.skip(skip);
  const dir = tempDir('layout-postfix');
  for (const f of ['main.cf', 'master.cf']) fs.copyFileSync(path.join(LAYOUT, 'postfix', f), path.join(dir, f));
  const main = run(POSTCONF, ['-c', dir, '-n']);
  assert.equal(main.status, 0, main.output);
  assert.doesNotMatch(main.output, /warning/, main.output);
  assert.match(main.output, /^smtpd_relay_restrictions = permit_mynetworks, reject$/m);
  assert.match(main.output, /^mydestination =\s*$/m, 'no local delivery');
  const master = run(POSTCONF, ['-c', dir, '-M']);
  assert.equal(master.status, 0, master.output);
  assert.match(master.output, /^smtp\s+inet\b/m);
  fs.appendFileSync(path.join(dir, 'main.cf'), 'smtpd_relay_restriction = permit\n');
  assert.match(run(POSTCONF, ['-c', dir, '-n']).output, /warning: .*unused parameter: smtpd_relay_restriction/, 'a misspelt parameter is reported');
});

test('deploy/multi-node: the hosted node and forwarder configs pass postino check-config', async () => {
  const dir = tempDir('layout-config');
  // The production certificate paths, pointed at a real pair (check-config opens the files).
  const tls = await ensureDevTls(path.join(dir, 'tls'));
  const copy = (f: string, edit: (c: Record<string, any>) => void = () => undefined): string => { // eslint-disable-line @typescript-eslint/no-explicit-any -- a JSON config edited by key path
    const text = fs.readFileSync(path.join(LAYOUT, f), 'utf8').replace('/etc/postino/tls/listener.crt', tls.certFile).replace('/etc/postino/tls/listener.key', tls.keyFile);
    const c = JSON.parse(text) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- as above
    edit(c);
    const file = path.join(dir, f);
    fs.writeFileSync(file, JSON.stringify(c));
    return file;
  };
  for (const f of ['hosted-node.json', 'forwarder.json']) {
    const r = run(process.execPath, [CLI, 'check-config', copy(f)]);
    assert.equal(r.status, 0, `${f}: ${r.output}`);
  }
  const r = run(process.execPath, [CLI, 'check-config', copy('hosted-node.json', (c) => (c.storage.postgres.url = 'mysql://db/postino'))]);
  assert.equal(r.status, 2, r.output);
  assert.match(r.output, /storage\.postgres\.url/);
});
