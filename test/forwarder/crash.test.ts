/*
 * Crash safety: SIGKILL the forwarder 20 times at random moments while a
 * client keeps sending, restart it each time on the same spool; at the end
 * every message that got 250 is in the sink (duplicates counted, allowed:
 * a kill between the sink's 250 and the spool's ack means one more try).
 * Then the spool drains back to near-zero disk use (compaction).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { startSink } from '../../sink/capture-sink.js';
import { admin, forwarderConfig, sleep, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { countDelivered } from '../helpers/sink-reader.js';

const CYCLES = 20;

test(`SIGKILL ${CYCLES} times during load: zero acknowledged messages lost`, { timeout: 120_000 }, async () => {
  const dataDir = tempDir('crash');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`]);
  let fwd = await startForwarderProcess(dataDir, config);
  const sender = runPythonSender(['--port', String(ports.smtp), '--count', '1000000', '--prefix', 'c', '--error-pause-ms', '20']);
  sender.done.catch(() => undefined); // we stop it with a signal at the end
  try {
    const killedAt: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      await sleep(150 + Math.random() * 600);
      killedAt.push(sender.results.filter((r) => r.ok).length);
      fwd.kill9();
      await fwd.exited;
      fwd = await startForwarderProcess(dataDir, config);
    }
    await sleep(500);
    sender.child.kill('SIGTERM');
    await new Promise((r) => sender.child.once('exit', r));
    const acked = sender.results.filter((r) => r.ok).map((r) => r.testId);
    assert.ok(acked.length >= 100, `a real load: ${acked.length} acknowledged`);

    const { lost, duplicates, unacked } = await countDelivered(sinkDir, acked, 40_000);
    console.log(`# crash: ${CYCLES} kills (acked at each: ${killedAt.join(',')}), ${acked.length} acknowledged, ${lost.length} lost, ${duplicates} duplicates, ${unacked} delivered without an ack`);
    assert.deepEqual(lost, [], 'no acknowledged message lost');

    // Drained: the spool's disk use comes back near zero.
    const until = Date.now() + 10_000;
    let st = await admin(dataDir, ports.admin, 'GET', '/status');
    while ((Number(st.body.queued) > 0 || Number(st.body.spoolDiskBytes) > 64 * 1024) && Date.now() < until) {
      await sleep(250);
      st = await admin(dataDir, ports.admin, 'GET', '/status');
    }
    console.log(`# crash: after drain queued ${String(st.body.queued)}, spool on disk ${String(st.body.spoolDiskBytes)} bytes`);
    assert.equal(st.body.queued, 0);
    assert.ok(Number(st.body.spoolDiskBytes) < 64 * 1024, 'spool compacted after drain');
  } finally {
    sender.child.kill('SIGKILL');
    await fwd.stop();
    await sink.close();
  }
});
