/*
 * Peak leveling: with relay.maxMessagesPerSecond = 50, a burst of 1,000
 * messages is accepted at the speed of the client and the disk, and relayed
 * at 50 ± 5 msg/s, measured from the sink's receivedAt timestamps.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { startSink } from '../../sink/capture-sink.js';
import { admin, forwarderConfig, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { waitForSink } from '../helpers/sink-reader.js';

const RATE = 50;
const COUNT = 1000;
const SENDERS = 4;

test('a 1,000-message burst is accepted at full speed and relayed at 50 ± 5 msg/s', { timeout: 90_000 }, async () => {
  const dataDir = tempDir('rate');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`], { forwarder: { relay: { maxMessagesPerSecond: RATE } } });
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const t0 = Date.now();
    // Four clients at once, as several app servers would: the burst is as fast as this (shared) machine allows.
    const parts = await Promise.all(
      Array.from({ length: SENDERS }, (_, k) => runPythonSender(['--port', String(ports.smtp), '--count', String(COUNT / SENDERS), '--start', String((k * COUNT) / SENDERS), '--prefix', 'r']).done),
    );
    const sent = parts.flat();
    const acceptSecs = (Date.now() - t0) / 1000;
    assert.equal(sent.filter((r) => r.ok).length, COUNT, 'every message acknowledged');
    const acceptRate = COUNT / acceptSecs;
    const st = await admin(dataDir, ports.admin, 'GET', '/status');
    const msgs = await waitForSink(sinkDir, (m) => m.length >= COUNT, 60_000);
    assert.equal(msgs.length, COUNT, 'all relayed, none twice');
    const times = msgs.map((m) => Date.parse(m.receivedAt)).sort((a, b) => a - b);
    const relaySecs = (times[times.length - 1]! - times[0]!) / 1000;
    const relayRate = (COUNT - 1) / relaySecs;
    console.log(`# rate cap ${RATE}/s: accepted ${COUNT} in ${acceptSecs.toFixed(1)} s (${acceptRate.toFixed(0)} msg/s); relayed in ${relaySecs.toFixed(1)} s = ${relayRate.toFixed(1)} msg/s; queued right after the burst: ${String(st.body.queued)}, drain estimate ${String(st.body.estimatedDrainSeconds)} s`);
    // Full speed = the client's and the disk's, not the relay cap (the machine is shared: no fixed figure).
    assert.ok(acceptRate > RATE * 1.5, `intake is not slowed to the relay rate (${acceptRate.toFixed(0)} msg/s)`);
    assert.ok(Number(st.body.queued) >= 100, 'a backlog built up in the spool while the burst was accepted');
    assert.ok(Math.abs(relayRate - RATE) <= 5, `relayed at ${relayRate.toFixed(1)} msg/s`);
    // Over any 5-second window the cap holds too, within the same 10 % (sink fsyncs bunch arrivals a little).
    const maxIn5s = Math.ceil(RATE * 5 * 1.1);
    let worst = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[j]! < times[i]! - 5_000) j++;
      worst = Math.max(worst, i - j + 1);
    }
    assert.ok(worst <= maxIn5s, `at most ${maxIn5s} in any 5 s window (got ${worst})`);
  } finally {
    await fwd.stop();
    await sink.close();
  }
});
