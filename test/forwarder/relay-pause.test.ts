/*
 * Kill-switch: during a steady stream, `postino forwarder pause` stops the
 * sink's count within a second while the forwarder keeps acknowledging new
 * mail; the paused state survives a restart; `resume` drains everything.
 * `pause --intake` refuses new mail with 421.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { startSink } from '../../sink/capture-sink.js';
import { admin, cli, cliAsync, forwarderConfig, sinkCount, sleep, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { waitForSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

test('pause stops relaying within 1 s while intake keeps accepting; paused survives restart; resume drains', { timeout: 90_000 }, async () => {
  const dataDir = tempDir('ks');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`]);
  let fwd = await startForwarderProcess(dataDir, config);
  try {
    // A steady stream: one message every 20 ms (about 40/s with smtplib's overhead).
    const sender = runPythonSender(['--port', String(ports.smtp), '--count', '400', '--prefix', 'ks', '--interval-ms', '20']);
    await waitForSink(sinkDir, (m) => m.length >= 30, 20_000);
    const acceptedAtPause = sender.results.filter((r) => r.ok).length;
    const tCli = Date.now();
    const paused = await cliAsync(dataDir, ports.admin, 'pause');
    // The 1 s is counted from the command's return (the switch is thrown then); the
    // CLI's own start-up (Node) is reported, not counted: under load it is ~1 s itself.
    const t0 = Date.now();
    const cliMs = t0 - tCli;
    assert.equal(paused.status, 0, paused.stderr);
    assert.match(paused.stdout, /paused: relaying stopped/);
    await sleep(1_000);
    const sinkAt1s = sinkCount(sinkDir);
    await sleep(2_000);
    const sinkAt3s = sinkCount(sinkDir);
    const acceptedAt3s = sender.results.filter((r) => r.ok).length;
    console.log(`# kill-switch: CLI returned in ${cliMs} ms; sink ${sinkAt1s} at +1 s, ${sinkAt3s} at +3 s; accepted ${acceptedAtPause} → ${acceptedAt3s}`);
    assert.equal(sinkAt3s, sinkAt1s, 'nothing relayed after the first second of the pause');
    assert.ok(acceptedAt3s > acceptedAtPause + 20, 'intake kept accepting while paused');

    const st = cli(dataDir, ports.admin, 'status');
    assert.match(st.stdout, /^relaying\s+PAUSED since /m);
    assert.match(st.stdout, /^intake\s+accepting$/m);

    // Restart while paused: still paused.
    const sent = await sender.done;
    assert.equal(sent.filter((r) => !r.ok).length, 0, 'every message acknowledged');
    assert.equal(await fwd.stop(), 0);
    fwd = await startForwarderProcess(dataDir, config);
    const s1 = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(s1.body.paused, true, 'paused state survived the restart');
    assert.ok(Number(s1.body.queued) > 0);
    assert.equal(s1.body.estimatedDrainSeconds, null, 'no drain estimate while paused');
    await sleep(1_500);
    assert.equal(sinkCount(sinkDir), sinkAt3s, 'still nothing relayed after the restart');

    // Resume: drain completes, every accepted message exactly once.
    const resumed = cli(dataDir, ports.admin, 'resume');
    assert.equal(resumed.status, 0, resumed.stderr);
    const msgs = await waitForSink(sinkDir, (m) => m.length >= 400, 30_000);
    const ids = new Set(msgs.map((m) => m.testId));
    assert.equal(ids.size, 400, 'all 400 delivered after resume');
    const s2 = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(s2.body.paused, false);
  } finally {
    await fwd.stop();
    await sink.close();
  }
});

test('pause --intake refuses new mail with 421 at connect; resume accepts again', { timeout: 30_000 }, async () => {
  const dataDir = tempDir('ks-intake');
  const { config, ports } = await forwarderConfig(['smtp://127.0.0.1:1']);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    assert.equal(cli(dataDir, ports.admin, 'pause', '--intake').status, 0);
    const c = await RawSmtp.connect(ports.smtp);
    assert.match(await c.reply(), /^421 4\.3\.2 /);
    c.close();
    const st = cli(dataDir, ports.admin, 'status');
    assert.match(st.stdout, /^intake\s+PAUSED: new mail gets 421$/m);
    assert.equal(cli(dataDir, ports.admin, 'resume').status, 0);
    const d = await RawSmtp.connect(ports.smtp);
    assert.match(await d.reply(), /^220 /);
    d.close();
  } finally {
    await fwd.stop();
  }
});
