/*
 * Effectively once across the forwarder → listener hop, and outage ride-through,
 * with the real hosted side (`postino hosted`: listener + engine) and the
 * capture sink behind it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { ensureDevTls, secretsDir } from '../../common/secrets.js';
import { startSink } from '../../sink/capture-sink.js';
import { admin, forwarderConfig, sleep, startForwarderProcess } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { tempDir, type Running } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { waitForSink } from '../helpers/sink-reader.js';

/**
 * A TCP proxy in front of the listener that, for the first `drops` transactions,
 * passes the final dot upstream and then cuts the connection before the reply
 * reaches the forwarder: the listener has the message, the forwarder cannot know.
 * To see the dot it hides STARTTLS from the EHLO reply (the forwarder runs with
 * relay.requireTls false here; with the default it would refuse this downgrade).
 */
async function droppingProxy(upstreamPort: number, drops: number): Promise<TcpProxy & { dropped(): number }> {
  let dropped = 0;
  const proxy = await startTcpProxy(upstreamPort, (client, up) => {
    let tail = '';
    let cutOnReply = false;
    client.on('data', (d: Buffer) => {
      const s = tail + d.toString('latin1');
      if (drops > 0 && s.includes('\r\n.\r\n')) {
        drops--;
        cutOnReply = true;
      }
      tail = s.slice(-4);
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      if (cutOnReply) {
        dropped++;
        client.destroy();
        up.destroy();
        return;
      }
      client.write(Buffer.from(d.toString('latin1').replace(/^250([ -])STARTTLS\r$/m, '250$1X-HIDDEN-BY-TEST\r'), 'latin1'));
    });
  });
  return { ...proxy, dropped: () => dropped };
}

test('a listener that drops the connection after the final dot: the forwarder retries, the sink holds exactly one copy', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('once');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  // The dropping proxy relays plain SMTP, so this account takes mail without STARTTLS.
  const h = await hostedConfig(sink.port, { accounts: [{ id: 'default', networks: ['127.0.0.1/32'], listener: { requireTls: false } }] });
  const hosted = await startHostedProcess(dataDir, h.config);
  const proxy = await droppingProxy(h.listenerPort, 3);
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${proxy.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const sent = await runPythonSender(['--port', String(ports.smtp), '--count', '3', '--prefix', 'once']).done;
    assert.ok(sent.every((r) => r.ok));
    const msgs = await waitForSink(sinkDir, (m) => m.length >= 3, 30_000);
    await sleep(3_000); // time for any second copy to show up
    const all = await waitForSink(sinkDir, () => true, 0);
    assert.equal(proxy.dropped(), 3, 'three replies were lost after the final dot');
    assert.deepEqual(all.map((m) => m.testId).sort(), ['once-0', 'once-1', 'once-2'], 'exactly one copy of each');
    for (const m of msgs) assert.doesNotMatch(m.headers, /X-Postino-Spool-Id/i, 'the spool id header is removed before delivery');
    const dupLines = hosted.lines.filter((l) => l.includes('"event":"duplicate"'));
    assert.equal(dupLines.length, 3, 'the listener answered each retry 250 without enqueuing it again');
    const st = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(st.body.queued, 0);
    assert.equal(st.body.delivered, 3);
  } finally {
    await fwd.stop();
    await hosted.stop();
    await proxy.close();
    await sink.close();
  }
});

test('outage: 1,000 messages spooled while the listener is down, started 30 s later, all arrive once (default retry schedule)', { timeout: 150_000 }, async () => {
  const dataDir = tempDir('outage');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  const tls = await ensureDevTls(secretsDir(dataDir));
  const h = await hostedConfig(sink.port);
  // Over STARTTLS with the dev CA verified, as in production.
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${h.listenerPort}`], {
    forwarder: { relay: { requireTls: true, caFile: tls.caFile, serverName: 'localhost' } },
  });
  const fwd = await startForwarderProcess(dataDir, config);
  let hosted: Running | undefined;
  try {
    const t0 = Date.now();
    const sent = await runPythonSender(['--port', String(ports.smtp), '--count', '1000', '--prefix', 'o']).done;
    assert.equal(sent.filter((r) => r.ok).length, 1000, 'all 1,000 accepted while the listener is down');
    // The default retry schedule (5 min first): the outage is the relay's state, no message is deferred.
    const stDown = await admin<{ queued: number; deferred: number; held: number; relays: Array<{ state: string; lastError: string }> }>(dataDir, ports.admin, 'GET', '/status');
    assert.equal(stDown.body.queued, 1000);
    assert.equal(stDown.body.relays[0]!.state, 'down');
    assert.match(stDown.body.relays[0]!.lastError, /ECONNREFUSED/);
    assert.equal(stDown.body.deferred, 0, 'no message deferred');
    const during = await admin<{ messages: Array<{ attempts: number }> }>(dataDir, ports.admin, 'GET', '/queue?limit=1000');
    assert.ok(during.body.messages.every((m) => m.attempts === 0), 'no attempt charged');

    await sleep(Math.max(0, 30_000 - (Date.now() - t0)));
    const downFor = (Date.now() - t0) / 1000;
    hosted = await startHostedProcess(dataDir, h.config);
    const tUp = Date.now();
    const msgs = await waitForSink(sinkDir, (m) => new Set(m.map((x) => x.testId)).size >= 1000, 90_000);
    const drainSecs = (Date.now() - tUp) / 1000;
    const ids = new Set(msgs.map((m) => m.testId));
    const duplicates = msgs.length - ids.size;
    console.log(`# outage: listener down ${downFor.toFixed(1)} s; after it came up, 1,000 in the sink in ${drainSecs.toFixed(1)} s; ${duplicates} duplicates`);
    assert.equal(ids.size, 1000, 'none lost');
    assert.equal(duplicates, 0, 'and none twice');
  } finally {
    await fwd.stop();
    await hosted?.stop();
    await sink.close();
  }
});
