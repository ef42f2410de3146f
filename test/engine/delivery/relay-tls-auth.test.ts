/*
 * STARTTLS and AUTH per relay: a relay that requires both gets a TLS session
 * and our login from the URL; a relay refusing the login is down like an
 * unreachable one (the copy held, never charged a try, never a bounce of the
 * customer's mail).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { ensureDevTls } from '../../../common/secrets.js';
import { startDeliveryHarness } from '../../helpers/delivery-harness.js';
import { tempDir } from '../../helpers/postino.js';

async function authRelay(seen: Array<{ secure: boolean; user: unknown }>): Promise<SMTPServer & { port: number }> {
  const tls = await ensureDevTls(tempDir('relay-tls'));
  const server = new SMTPServer({
    key: fs.readFileSync(tls.keyFile),
    cert: fs.readFileSync(tls.certFile),
    authMethods: ['PLAIN', 'LOGIN'],
    disableReverseLookup: true,
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === 'relayuser' && auth.password === 's3cret/+') return cb(null, { user: 'relayuser' });
      cb(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
    },
    onMailFrom(_a, session, cb) {
      if (!session.secure) return cb(Object.assign(new Error('5.7.0 Must issue a STARTTLS command first'), { responseCode: 530 }));
      if (!session.user) return cb(Object.assign(new Error('5.7.0 Authentication required'), { responseCode: 530 }));
      cb();
    },
    onData(stream, session, cb) {
      stream.resume();
      stream.on('end', () => {
        seen.push({ secure: session.secure, user: session.user });
        cb(null);
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return Object.assign(server, { port: ((server as unknown as { server: { address(): AddressInfo } }).server.address()).port });
}

test('a relay requiring STARTTLS and AUTH gets both, from the relay entry and its URL', { timeout: 30_000 }, async () => {
  const seen: Array<{ secure: boolean; user: unknown }> = [];
  const relay = await authRelay(seen);
  const h = await startDeliveryHarness({ delivery: { relays: [{ url: `smtp://relayuser:${encodeURIComponent('s3cret/+')}@127.0.0.1:${relay.port}`, requireTls: true }] } });
  try {
    const id = await h.send('tls@example.com');
    const evs = await h.waitFor((e) => e.some((x) => x.queueId === id), 10_000);
    assert.equal(evs.find((e) => e.queueId === id)?.type, 'delivered');
    assert.deepEqual(seen, [{ secure: true, user: 'relayuser' }]);
    assert.equal(h.delivery.pool.status()[0]!.relay, `smtp://relayuser:***@127.0.0.1:${relay.port}`, 'the password never shows in status');
  } finally {
    await h.close();
    relay.close();
  }
});

test('a relay refusing our login: the relay is down, the copy held (no try charged, no event), not bounced', { timeout: 30_000 }, async () => {
  const relay = await authRelay([]);
  const h = await startDeliveryHarness({ delivery: { relays: [{ url: `smtp://relayuser:wrong@127.0.0.1:${relay.port}`, requireTls: true }], retryScheduleSeconds: [60] } });
  try {
    const id = await h.send('auth@example.com');
    const until = Date.now() + 10_000;
    while (h.delivery.pool.status()[0]!.state === 'up' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200)); // the copy is given back
    const st = h.delivery.pool.status()[0]!;
    assert.equal(st.state, 'down');
    assert.match(st.lastError!, /535/);
    assert.equal(st.relay, `smtp://relayuser:***@127.0.0.1:${relay.port}`, 'the password never shows in status');
    assert.deepEqual((await h.all()).filter((e) => e.queueId === id), [], 'no deferred or bounced event for a relay problem');
    const rec = await h.queue.get(id);
    assert.ok(rec, 'the copy is still queued');
    assert.equal(rec.meta.tries ?? 0, 0, 'no try charged');
    assert.equal((await h.delivery.status()).outcomes.held, 1);
  } finally {
    await h.close();
    relay.close();
  }
});
