/*
 * Recovery without a five-minute stall (issue #18), with real processes over
 * loopback and the DEFAULT retry schedule (300 s first): an unreachable
 * listener is a state of the relay, the spool holds, the listener is probed,
 * and the held mail leaves within seconds of its return, no message charged
 * an attempt. (`postino up` killed and restarted: test/e2e/recovery.test.ts;
 * the ten-minute outage with an injected clock: relay-worker.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admin, forwarderConfig, sinkCount, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonClients } from '../helpers/python-sender.js';
import { countDelivered } from '../helpers/sink-reader.js';
import { lineCount, metric, statusUntil, tlsRelay, type Status } from '../helpers/relay-status.js';

test('listener stopped 3 s while 1,000 messages are spooled and relaying: all delivered within 10 s of its return, none charged an attempt', { timeout: 120_000 }, async () => {
  const dataDir = tempDir('recover-3s');
  const { sink, sinkDir } = await startTestSink(dataDir);
  const h = await hostedConfig(sink.port);
  let hosted = await startHostedProcess(dataDir, h.config);
  // The rate cap keeps mail in the spool while it relays, as a real backlog would.
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${h.listenerPort}`], { forwarder: { relay: { ...(await tlsRelay(dataDir)), maxMessagesPerSecond: 200 } } });
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const clients = runPythonClients(10, 'r3-', ['--port', String(ports.smtp), '--count', '100']);
    await statusUntil(dataDir, ports.admin, (st) => st.delivered >= 400, 60_000);
    await hosted.stop();
    const stoppedAt = Date.now();
    const during = await statusUntil(dataDir, ports.admin, (st) => st.relays[0]!.state === 'down', 3_000);
    await sleep(Math.max(0, 3_000 - (Date.now() - stoppedAt)));
    await clients.done;
    const acked = clients.acked();
    const spooled = (await admin<Status>(dataDir, ports.admin, 'GET', '/status')).body;
    hosted = await startHostedProcess(dataDir, h.config);
    const back = Date.now();
    const drained = await statusUntil(dataDir, ports.admin, (st) => st.queued === 0, 30_000);
    const relayedIn = (Date.now() - back) / 1000;
    while (sinkCount(sinkDir) < acked.length && Date.now() - back < 30_000) await sleep(100);
    const inSink = (Date.now() - back) / 1000;
    const { lost, duplicates, unacked } = await countDelivered(sinkDir, acked, 30_000);
    const m = (await admin<string>(dataDir, ports.admin, 'GET', '/metrics')).body;
    const upLine = fwd.lines.find((l) => l.includes('"event":"relay-up"'));
    const foundAfter = upLine ? (Date.parse(JSON.parse(upLine).time as string) - back) / 1000 : NaN;
    console.log(
      `# recovery 3 s: listener stopped after ${during.delivered} relayed; ${spooled.queued} spooled at its return (relay ${during.relays[0]!.state}); probe found it up ${foundAfter.toFixed(1)} s after its return; ` +
        `spool empty ${relayedIn.toFixed(1)} s and all ${acked.length} in the sink ${inSink.toFixed(1)} s after its return; ${lost.length} lost, ${duplicates} duplicates, ${unacked} unacked; ` +
        `deferred_total ${metric(m, 'postino_forwarder_deferred_total')}, held_total ${metric(m, 'postino_forwarder_held_total')}`,
    );
    assert.equal(acked.length, 1000);
    assert.deepEqual(lost, [], 'none lost');
    assert.ok(spooled.queued >= 200, `spooled and relaying when the listener stopped (${spooled.queued})`);
    assert.equal(during.relays[0]!.state, 'down', 'the relay was marked down');
    assert.equal(spooled.deferred, 0, 'no message deferred during the outage');
    assert.equal(drained.queued, 0);
    assert.ok(inSink < 10, `delivered within 10 s of the return (${inSink.toFixed(1)} s)`);
    assert.equal(metric(m, 'postino_forwarder_deferred_total'), 0, 'no attempt ended in a retry');
    assert.equal(lineCount(fwd, 'deferred'), 0, 'no per-message deferred line');
    assert.equal(lineCount(fwd, 'relay-down'), 1, 'one line when it went down');
    assert.equal(lineCount(fwd, 'relay-up'), 1, 'one when it came back');
  } finally {
    await fwd.stop();
    await hosted.stop();
    await sink.close();
  }
});
