/*
 * The relay side: failover across listener URLs in order, STARTTLS required by
 * default (a listener without it is down, never sent mail in clear), and the
 * retry limit ending in a DSN to the sender (and no DSN for a DSN).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { startSink } from '../../sink/capture-sink.js';
import { admin, forwarderConfig, sleep, startForwarderProcess, startTestSink } from '../helpers/forwarder.js';
import { freePorts } from '../helpers/ports.js';
import { tempDir } from '../helpers/postino.js';
import { runPythonSender } from '../helpers/python-sender.js';
import { waitForSink } from '../helpers/sink-reader.js';

interface Listing {
  messages: Array<{ id: string; from: string; recipients: string[]; lastError: { response: string } | null }>;
}

async function listing(dataDir: string, port: number): Promise<Listing['messages']> {
  return (await admin<Listing>(dataDir, port, 'GET', '/queue')).body.messages;
}

test('failover: the first listener URL is down, the second takes the message', { timeout: 30_000 }, async () => {
  const dataDir = tempDir('failover');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  const [dead] = await freePorts(1);
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${dead}`, `smtp://127.0.0.1:${sink.port}`]);
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    assert.ok((await runPythonSender(['--port', String(ports.smtp), '--count', '2', '--prefix', 'fo']).done).every((r) => r.ok));
    const got = await waitForSink(sinkDir, (m) => m.length >= 2, 10_000);
    assert.deepEqual(got.map((m) => m.testId).sort(), ['fo-0', 'fo-1'], 'delivered on the first attempt, through the second URL');
  } finally {
    await fwd.stop();
    await sink.close();
  }
});

test('STARTTLS is required by default: a listener without it is down (held, probed), never sent mail in clear', { timeout: 30_000 }, async () => {
  const dataDir = tempDir('tls-required');
  const sinkDir = path.join(dataDir, 'sink');
  const sink = await startSink({ host: '127.0.0.1', port: 0, maxSize: 1 << 20, dir: null, rules: [] }, sinkDir, createLogger('sink', 'silent'));
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`], { forwarder: { relay: { requireTls: true } } });
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    assert.ok((await runPythonSender(['--port', String(ports.smtp), '--count', '1', '--prefix', 'tls']).done)[0]!.ok);
    let st = await admin<{ relays: Array<{ state: string; lastError: string | null }>; held: number; deferred: number }>(dataDir, ports.admin, 'GET', '/status');
    for (let i = 0; i < 50 && st.body.relays[0]!.state === 'up'; i++) {
      await sleep(100);
      st = await admin(dataDir, ports.admin, 'GET', '/status');
    }
    await sleep(300);
    st = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(st.body.relays[0]!.state, 'down');
    assert.match(st.body.relays[0]!.lastError!, /STARTTLS/i, 'down because the listener offers no STARTTLS');
    assert.equal(st.body.held, 1);
    assert.equal(st.body.deferred, 0, 'the message is held, not deferred');
    const msgs = await listing(dataDir, ports.admin);
    assert.equal(msgs.length, 1);
    assert.equal(fwd.lines.filter((l) => l.includes('"event":"dsn"')).length, 0, 'a TLS failure is never a bounce');
    assert.equal(sink.received(), 0, 'nothing sent in clear');
  } finally {
    await fwd.stop();
    await sink.close();
  }
});

test('retry limit: the message expires into a DSN to the sender; the DSN itself expires without another', { timeout: 40_000 }, async () => {
  const dataDir = tempDir('expire');
  // A reachable listener that answers 4xx to everyone: the per-message schedule (an unreachable one only holds the spool).
  const rules = [
    { recipient: '@example.com', reply: '451 4.3.0 try again later', times: null },
    { recipient: 'shop@example.org', reply: '451 4.3.0 try again later', times: null },
  ];
  const { sink } = await startTestSink(dataDir, rules);
  const { config, ports } = await forwarderConfig([`smtp://127.0.0.1:${sink.port}`], { forwarder: { retry: { scheduleSeconds: [1], maxAgeSeconds: 2 } } });
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    const [sent] = await runPythonSender(['--port', String(ports.smtp), '--count', '1', '--prefix', 'exp']).done;
    assert.ok(sent!.ok);
    let msgs = await listing(dataDir, ports.admin);
    // The DSN is spooled before the original is acked (a crash between them repeats the DSN rather than lose it), so wait for both.
    for (let i = 0; i < 100 && !(msgs.some((m) => m.from === '') && !msgs.some((m) => m.from === 'shop@example.org')); i++) {
      await sleep(100);
      msgs = await listing(dataDir, ports.admin);
    }
    const dsn = msgs.find((m) => m.from === '');
    assert.ok(dsn, 'a DSN was spooled');
    assert.deepEqual(dsn.recipients, ['shop@example.org'], 'to the original sender');
    assert.ok(!msgs.some((m) => m.from === 'shop@example.org'), 'the original is gone');
    for (let i = 0; i < 100 && msgs.length > 0; i++) {
      await sleep(100);
      msgs = await listing(dataDir, ports.admin);
    }
    assert.deepEqual(msgs, [], 'the DSN expired too, and made no DSN of its own');
    const bounced = fwd.lines.filter((l) => l.includes('"event":"bounced"'));
    assert.equal(bounced.length, 2, 'both expiries logged');
    assert.equal(fwd.lines.filter((l) => l.includes('"event":"dsn"')).length, 1, 'one DSN only');
    const st = await admin(dataDir, ports.admin, 'GET', '/status');
    assert.equal(st.body.failed, 2);
  } finally {
    await fwd.stop();
    await sink.close();
  }
});
