/*
 * The forwarder at its defaults (relay.yieldToIntakeSeconds 10) under a
 * burst it cannot both take and relay (forwarder/intake-first.ts): Postfix's
 * smtp-source, 20 lock-step sessions over reused connections (-d), 6,000
 * messages of 2 KB, relayed to a capture sink. The relay steps back while the
 * burst lasts (its metrics say so), every message still arrives once, and the
 * relay runs at full concurrency again after it. A light load before it (one
 * Python client, one message at a time) never makes the relay step back.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { admin, forwarderConfig, sinkCount, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { requirePeer } from '../helpers/peers.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';

const SMTP_SOURCE = '/usr/sbin/smtp-source';
const BURST = 6_000;
const LIGHT = 20;

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

test('a burst the event loop cannot both take and relay: intake goes first, every message arrives once, the relay catches up', { timeout: 180_000, skip: requirePeer('postfix', SMTP_SOURCE) }, async () => {
  const dataDir = tempDir('intake-first');
  const { sink, sinkDir } = await startTestSink(dataDir);
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  const metrics = async (): Promise<string> => (await admin<string>(dataDir, ports.admin, 'GET', '/metrics')).body;
  try {
    const light = await runPythonSender(['--port', String(ports.smtp), '--count', String(LIGHT), '--prefix', 'light']).done;
    assert.equal(light.filter((r) => r.ok).length, LIGHT);
    for (let i = 0; i < 100 && sinkCount(sinkDir) < LIGHT; i++) await sleep(100);
    assert.equal(sinkCount(sinkDir), LIGHT, 'the light load relayed');
    assert.equal(metric(await metrics(), 'postino_forwarder_relay_yield_seconds_total'), 0, 'a light load never makes the relay step back');

    const t0 = Date.now();
    await promisify(execFile)(SMTP_SOURCE, ['-d', '-s', '20', '-l', '2048', '-m', String(BURST), '-f', 'shop@example.org', '-t', 'customer@example.com', `127.0.0.1:${ports.smtp}`], { maxBuffer: 1 << 24 });
    const burstSecs = (Date.now() - t0) / 1000;
    const afterBurst = await metrics();
    const yielded = metric(afterBurst, 'postino_forwarder_relay_yield_seconds_total');
    const accepted = metric(afterBurst, 'postino_forwarder_accepted_total');
    const relayedDuring = metric(afterBurst, 'postino_forwarder_relayed_total') - LIGHT;
    assert.equal(accepted, LIGHT + BURST, 'every message of the burst spooled');
    assert.ok(yielded > 0, `the relay stepped back during the burst (${yielded} s)`);

    const t1 = Date.now();
    while (Date.now() - t1 < 120_000) {
      const st = await admin(dataDir, ports.admin, 'GET', '/status');
      if (st.body.queued === 0 && sinkCount(sinkDir) >= LIGHT + BURST) break;
      await sleep(200);
    }
    const drainSecs = (Date.now() - t1) / 1000;
    await sleep(500); // a copy sent twice would land by now
    assert.equal(sinkCount(sinkDir), LIGHT + BURST, 'every message relayed, none twice');
    await sleep(300); // a sample or more with nothing arriving
    const after = await metrics();
    assert.equal(metric(after, 'postino_forwarder_relay_yielding'), 0, 'full concurrency again once the burst is over');
    console.log(
      `# burst of ${BURST} × 2 KB (smtp-source -d -s 20): taken in ${burstSecs.toFixed(1)} s (${(BURST / burstSecs).toFixed(0)} msgs/s), ` +
        `${relayedDuring} relayed meanwhile, relay stepped back ${yielded.toFixed(1)} s; the rest relayed ${drainSecs.toFixed(1)} s later`,
    );
  } finally {
    await fwd.stop();
    await sink.close();
  }
});
