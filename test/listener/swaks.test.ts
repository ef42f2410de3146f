/*
 * Interop with a real client: swaks (Debian package) against the listener.
 * STARTTLS with certificate verification against the dev CA + AUTH LOGIN, and
 * plain without AUTH — accepted or refused as each account's policy says.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { hashPassword } from '../../common/password-hash.js';
import { startTestListener, type TestListener } from '../helpers/listener.js';
import { requirePeer, swaksSupports } from '../helpers/peers.js';

const SWAKS = '/usr/bin/swaks';
// The tests use STARTTLS (Net::SSLeay) and AUTH LOGIN: check both, not only the binary.
const skip = requirePeer('swaks', SWAKS, [swaksSupports(SWAKS, 'TLS'), swaksSupports(SWAKS, 'Basic AUTH')]);
let l: TestListener;

before(async () => {
  if (skip) return;
  l = await startTestListener({
    accounts: [
      { id: 'app', networks: ['127.0.0.1/32'], listener: { users: [{ username: 'app', passwordHash: await hashPassword('app-pass') }] } },
      { id: 'lab', networks: ['127.0.0.4/32'], listener: { requireTls: false } },
    ],
  });
});
after(async () => l?.close());

/** Runs swaks without blocking the event loop (the listener runs in this process). */
function swaks(args: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(SWAKS, ['--server', '127.0.0.1', '--port', String(l.port), '--from', 'shop@example.org', '--to', 'ada@example.com', '--helo', 'swaks.test', ...args], { timeout: 30_000 });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (status) => resolve({ status, out }));
  });
}

test('swaks: STARTTLS (verified against the dev CA) + AUTH LOGIN is accepted and recorded', { skip }, async () => {
  const r = await swaks(['-tls', '--tls-verify', '--tls-ca-path', l.caFile, '--tls-sni', 'localhost', '--auth', 'LOGIN', '--auth-user', 'app', '--auth-password', 'app-pass', '--header', 'Subject: swaks tls auth']);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /<~ {2}235 /);
  assert.match(r.out, /<~ {2}250 2\.0\.0 Ok: queued as/);
  const m = (await l.messages()).find((x) => x.body.includes('swaks tls auth'))!;
  assert.equal(m.meta.account, 'app');
  assert.equal(m.meta.envelope.tls, true);
  assert.equal(m.meta.envelope.authUser, 'app');
});

test('swaks: plain without AUTH from the TLS+AUTH account is refused at MAIL with 530', { skip }, async () => {
  const r = await swaks(['--header', 'Subject: swaks plain refused']);
  assert.notEqual(r.status, 0);
  assert.match(r.out, /<\*\* 530 5\.7\.0 /);
});

test('swaks: plain without AUTH from an account that allows it is accepted', { skip }, async () => {
  const r = await swaks(['--local-interface', '127.0.0.4', '--header', 'Subject: swaks plain lab']);
  assert.equal(r.status, 0, r.out);
  const m = (await l.messages()).find((x) => x.body.includes('swaks plain lab'))!;
  assert.equal(m.meta.account, 'lab');
  assert.equal(m.meta.envelope.tls, false);
  assert.equal(m.meta.envelope.authUser, undefined);
});

test('swaks: AUTH LOGIN with a wrong password gets 535', { skip }, async () => {
  const r = await swaks(['-tls', '--tls-verify', '--tls-ca-path', l.caFile, '--tls-sni', 'localhost', '--auth', 'LOGIN', '--auth-user', 'app', '--auth-password', 'wrong']);
  assert.notEqual(r.status, 0);
  assert.match(r.out, /<~\* 535 5\.7\.8 /, "refused inside TLS");
});
