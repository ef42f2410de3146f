/*
 * Recovery without a five-minute stall (issue #18), the long outage: a
 * forwarder alone holds its spool while the probe interval grows to its
 * maximum, and a probe finds the listener back. Mostly waiting on the probe
 * schedule, with tolerant bounds (a probe within 2 s of its time, the drain
 * within 5 s of the cap), so it runs in the shared pass of test/run.js; the
 * 3 s restart with its 10 s bound is in recovery.test.ts, in the timed pass.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admin, cli, forwarderConfig, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { hostedConfig, startHostedProcess } from '../helpers/hosted.js';
import { tempDir, type Running } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { countDelivered } from '../helpers/sink-reader.js';
import { lineCount, metric, statusUntil, tlsRelay, type Status } from '../helpers/relay-status.js';

test('forwarder alone, listener unreachable until the probe interval reaches 15 s: one log line, status and metrics show the hold; the probe at 15 s finds it back and it drains at the rate cap within seconds of the return', { timeout: 150_000 }, async () => {
  const dataDir = tempDir('recover-alone');
  const { sink, sinkDir } = await startTestSink(dataDir);
  const h = await hostedConfig(sink.port);
  const CAP = 50;
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${h.listenerPort}`], { forwarder: { relay: { ...(await tlsRelay(dataDir)), maxMessagesPerSecond: CAP } } });
  const fwd = await startForwarderProcess(dataDir, config);
  let hosted: Running | undefined;
  try {
    const sent = await runPythonSender(['--port', String(ports.smtp), '--count', '300', '--prefix', 'alone']).done;
    const acked = sent.filter((r) => r.ok).map((r) => r.testId);
    assert.equal(acked.length, 300);

    // Watch the probe schedule from outside (each new nextProbeAt is one failed probe) until
    // the interval has grown to its 15 s maximum: probes at 1, 3, 6, 11, 16, 21, 31 s, the next at 46 s.
    const probeTimes: number[] = [];
    const intervals = (): number[] => probeTimes.slice(1).map((t, i) => Math.round((t - probeTimes[i]!) / 1000));
    let st = await admin<Status>(dataDir, ports.admin, 'GET', '/status');
    const t0 = Date.now();
    for (let i = 0; i < 300 && Date.now() - t0 < 50_000 && !intervals().includes(15); i++) {
      const next = st.body.relays[0]!.nextProbeAt;
      if (next && Date.parse(next) !== probeTimes.at(-1)) probeTimes.push(Date.parse(next));
      if (intervals().includes(15)) break;
      await sleep(250);
      st = await admin<Status>(dataDir, ports.admin, 'GET', '/status');
    }
    const r = st.body.relays[0]!;
    const downFor = (Date.now() - Date.parse(r.downSince!)) / 1000;
    console.log(`# recovery alone: probe intervals seen ${intervals().join(', ')} s; down ${downFor.toFixed(0)} s: ${r.failedProbes} failed probes, next in ${r.nextProbeInSeconds} s, holding ${r.held}`);
    assert.equal(r.state, 'down');
    assert.equal(st.body.held, 300);
    assert.equal(r.held, 300);
    assert.equal(st.body.deferred, 0);
    assert.ok(intervals().includes(15) && intervals().every((s, i, a) => s <= 15 && (i === 0 || s >= a[i - 1]!)), 'a few seconds at first, growing to the 15 s maximum');
    const maxProbeAt = probeTimes.at(-1)!;

    const down = fwd.lines.filter((l) => l.includes('"event":"relay-down"'));
    assert.equal(down.length, 1, 'one line for the outage so far, not one per message');
    assert.match(down[0]!, /"msg":"relay down, holding \d+ messages, next probe in 1 s"/);
    assert.equal(lineCount(fwd, 'deferred'), 0);

    const text = cli(dataDir, ports.admin, 'status');
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^held\s+300$/m);
    assert.match(text.stdout, /^relay\s+smtp:\/\/127\.0\.0\.1:\d+ DOWN since \S+ \(.*ECONNREFUSED.*\), next probe in \d+ s, holding 300$/m);
    const m = (await admin<string>(dataDir, ports.admin, 'GET', '/metrics')).body;
    assert.equal(metric(m, 'postino_forwarder_relay_up'), 0);
    assert.equal(metric(m, 'postino_forwarder_relay_held'), 300);
    assert.ok(metric(m, 'postino_forwarder_relay_down_since_seconds') > 1e9);
    assert.ok(metric(m, 'postino_forwarder_relay_next_probe_seconds') <= 15);
    const probes = await admin<{ messages: Array<{ attempts: number }> }>(dataDir, ports.admin, 'GET', '/queue');
    assert.ok(probes.body.messages.every((x) => x.attempts === 0), 'no attempt charged');

    hosted = await startHostedProcess(dataDir, h.config);
    const back = Date.now();
    await statusUntil(dataDir, ports.admin, (x) => x.relays[0]!.state === 'up', 20_000);
    const foundAfter = (Date.now() - back) / 1000;
    assert.ok(Math.abs(Date.now() - maxProbeAt) < 2_000, 'found by the probe 15 s after the one before');
    await statusUntil(dataDir, ports.admin, (x) => x.queued === 0, 40_000);
    const drained = (Date.now() - back) / 1000;
    const rate = 300 / (drained - foundAfter);
    const { lost, duplicates } = await countDelivered(sinkDir, acked, 40_000);
    console.log(`# recovery alone: listener back, found up after ${foundAfter.toFixed(1)} s, spool of 300 empty ${drained.toFixed(1)} s after the return (${rate.toFixed(1)} msg/s, cap ${CAP}); ${lost.length} lost, ${duplicates} duplicates`);
    assert.deepEqual(lost, []);
    assert.ok(foundAfter <= 16, `the next probe (at most 15 s away) finds it (${foundAfter.toFixed(1)} s)`);
    assert.ok(rate <= CAP * 1.2, `released at the rate cap, not above (${rate.toFixed(1)} msg/s)`);
    assert.ok(drained - foundAfter < 300 / CAP + 5, 'and at the cap, not slower');
    assert.equal(lineCount(fwd, 'relay-down'), 1, 'still one down line');
    assert.equal(lineCount(fwd, 'relay-up'), 1, 'and one up line');
    assert.equal(metric((await admin<string>(dataDir, ports.admin, 'GET', '/metrics')).body, 'postino_forwarder_deferred_total'), 0);
  } finally {
    await fwd.stop();
    await hosted?.stop();
    await sink.close();
  }
});
