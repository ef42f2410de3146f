/*
 * The admin API an operator uses while the hosted side defers mail: the
 * deferred queue with its last error, retry now, delete, status, metrics, and
 * the bearer token. (An unreachable hosted side is a relay state, not a
 * deferral: test/forwarder/recovery.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admin, cli, forwarderConfig, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { waitForSink } from '../helpers/sink-reader.js';

interface Listing {
  state: string;
  total: number;
  messages: Array<{ id: string; state: string; from: string; recipients: string[]; attempts: number; nextAttemptAt: string; lastError: { code: number; response: string } | null }>;
}

test('deferred listing, retry now, delete, status and metrics', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('admin');
  // The listener answers 451 to the first three attempts (one per message); the default
  // retry schedule then waits 5 minutes, so only an admin retry sends now.
  const rules = [{ recipient: 'customer0@example.com', reply: '451 4.3.0 try again later', times: 3 }];
  const { sink, sinkDir } = await startTestSink(dataDir, rules);
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const unauth = await fetch(`http://127.0.0.1:${ports.admin}/status`);
    assert.equal(unauth.status, 401, 'no token, no status');

    const sent = await runPythonSender(['--port', String(ports.smtp), '--count', '3', '--prefix', 'adm']).done;
    assert.ok(sent.every((r) => r.ok));
    let list = await admin<Listing>(dataDir, ports.admin, 'GET', '/queue?state=deferred');
    for (let i = 0; i < 40 && list.body.total < 3; i++) {
      await sleep(100);
      list = await admin<Listing>(dataDir, ports.admin, 'GET', '/queue?state=deferred');
    }
    assert.equal(list.body.total, 3, 'three deferred');
    const [a, b, c] = list.body.messages;
    assert.equal(a!.from, 'shop@example.org');
    assert.deepEqual(a!.recipients, ['customer0@example.com']);
    assert.equal(a!.attempts, 1);
    assert.match(a!.lastError!.response, /451 4\.3\.0/);
    assert.ok(Date.parse(a!.nextAttemptAt) > Date.now() + 250_000, 'next attempt in about five minutes');

    const st = await admin(dataDir, ports.admin, 'GET', '/status');
    for (const k of ['queued', 'inFlight', 'deferred', 'delivered', 'failed', 'paused', 'oldestAgeSeconds', 'estimatedDrainSeconds', 'relayRatePerSecond']) assert.ok(k in st.body, `status has ${k}`);
    assert.equal(st.body.queued, 3);
    assert.equal(st.body.deferred, 3);
    assert.equal(st.body.estimatedDrainSeconds, null, 'unknown while nothing is being relayed');

    assert.equal((await admin(dataDir, ports.admin, 'DELETE', `/queue/${b!.id}`)).status, 200);
    assert.equal((await admin(dataDir, ports.admin, 'DELETE', `/queue/${b!.id}`)).status, 404, 'gone');
    assert.equal((await admin(dataDir, ports.admin, 'GET', '/queue?state=bogus')).status, 400);

    assert.equal((await admin(dataDir, ports.admin, 'POST', `/queue/${a!.id}/retry`)).status, 200);
    const got = await waitForSink(sinkDir, (m) => m.length >= 1, 10_000);
    assert.deepEqual(got.map((m) => m.testId), ['adm-0'], 'the retried message went at once; the other still waits its five minutes');
    await sleep(500);
    const after = await admin<Listing>(dataDir, ports.admin, 'GET', '/queue');
    assert.deepEqual(after.body.messages.map((m) => m.id), [c!.id]);

    const text = cli(dataDir, ports.admin, 'status');
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^relaying\s+running$/m);
    assert.match(text.stdout, /^queued\s+1$/m);
    assert.match(text.stdout, /^deferred\s+1$/m);
    assert.match(text.stdout, /^delivered\s+1$/m);

    const metrics = await admin<string>(dataDir, ports.admin, 'GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^postino_forwarder_accepted_total 3$/m);
    assert.match(metrics.body, /^postino_forwarder_relayed_total 1$/m);
    assert.match(metrics.body, /^postino_forwarder_queued 1$/m);
    assert.match(metrics.body, /^postino_forwarder_paused 0$/m);
    assert.match(metrics.body, /^postino_forwarder_process_resident_memory_bytes \d+/m);
  } finally {
    await fwd.stop();
    await sink.close();
  }
});
