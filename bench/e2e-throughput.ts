/*
 * End-to-end throughput: Postfix's smtp-source (20 sessions, 2 KB messages,
 * one message per connection) → forwarder → (STARTTLS) listener → engine →
 * Postfix's smtp-sink (`postino up`, its relay pointed at smtp-sink); and in the same run the same load
 * through a Postfix instance of our own (test/helpers/postfix.ts) relaying to
 * Postfix's smtp-sink. Throughput counts from the first connection until the
 * last message is counted by smtp-sink, for both. Latency: probe messages sent once a second during the
 * load whose recipient carries the send time (Postino: its `delivered` event;
 * Postfix: its per-message `delay=` in the mail log). Peak RSS: the sum over
 * the postino processes.
 */
import { freePorts } from '../test/helpers/ports.js';
import { startPostfix } from '../test/helpers/postfix.js';
import { postfixReady } from './postfix-peer.js';
import { tempDir, upConfig } from '../test/helpers/postino.js';
import { readSecret } from '../common/secrets.js';
import { groupRssMiB, probeLatencies, probes, smtpSource, startSmtpSink, startUpLoggingToFile, type SourceLoad } from './pipeline-parts.js';
import { fmt, summarize } from './stats.js';

const SESSIONS = 20;
const MESSAGES = Number(process.env.BENCH_E2E_MESSAGES ?? 3000);
const SIZE = 2048;
const LOAD: SourceLoad = { sessions: SESSIONS, size: SIZE, messages: MESSAGES, reuse: false };
/** Upstream connections of the forwarder and rewrap slots of the engine in this benchmark. */
const TUNED = Number(process.env.BENCH_E2E_CONCURRENCY ?? 16);

async function benchPostino(): Promise<{ rate: number; seconds: number; lat: { p50: number; p99: number }; rss: number }> {
  const dataDir = tempDir('bench-e2e');
  // The forwarder's 4 upstream connections and the engine's 4 rewrap slots (defaults sized for an
  // appliance) are the bottleneck at 20 sessions; the benchmark sizes them like Postfix's 20.
  const sink = await startSmtpSink();
  const c = await upConfig(() => ({ forwarder: { relay: { maxConnections: TUNED } }, engine: { concurrency: TUNED }, delivery: { relays: [`smtp://127.0.0.1:${sink.port}`] } }));
  const up = await startUpLoggingToFile(dataDir, c.config, [c.ports.forwarder, c.ports.listener, c.ports.http, c.ports.sink]);
  const key = readSecret(dataDir, 'api-key')!;
  const adminToken = readSecret(dataDir, 'admin-token')!;
  const backlog = { intake: 0, delivery: 0, forwarder: 0 };
  const poller = setInterval(() => {
    void fetch(`http://127.0.0.1:${c.ports.http}/api/queue`, { headers: { authorization: `Bearer ${key}` } })
      .then((r) => r.json() as Promise<{ intake: number; delivery: { total: number } }>)
      .then((q) => {
        backlog.intake = Math.max(backlog.intake, q.intake);
        backlog.delivery = Math.max(backlog.delivery, q.delivery.total);
      })
      .catch(() => undefined);
    void fetch(`http://127.0.0.1:${c.ports.admin}/status`, { headers: { authorization: `Bearer ${adminToken}` } })
      .then((r) => r.json() as Promise<{ queued: number }>)
      .then((q) => (backlog.forwarder = Math.max(backlog.forwarder, q.queued)))
      .catch(() => undefined);
  }, 500);
  let peak = 0;
  const sampler = setInterval(() => void groupRssMiB(up.child.pid!).then((m) => (peak = Math.max(peak, m))), 250);
  const t0 = Date.now();
  const p = probes(c.ports.forwarder, SIZE);
  await smtpSource(c.ports.forwarder, LOAD);
  const nProbes = await p.stop();
  const total = MESSAGES + nProbes;
  while (sink.received() < total && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
  const seconds = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  clearInterval(poller);
  console.log(`  (largest backlog seen: forwarder spool ${backlog.forwarder}, hosted intake ${backlog.intake}, delivery ${backlog.delivery}; logs in ${dataDir}/postino.log)`);
  // Probe latency: acceptance at the forwarder (in the recipient) to the engine's `delivered` event.
  const feed = await fetch(`http://127.0.0.1:${c.ports.http}/api/events?after=0&limit=10000&type=delivered`, { headers: { authorization: `Bearer ${key}` } });
  const lat = probeLatencies(await feed.text());
  await up.stop();
  sink.stop();
  return { rate: MESSAGES / seconds, seconds, lat: summarize(lat), rss: peak };
}

async function benchPostfix(): Promise<{ rate: number; seconds: number; lat: { p50: number; p99: number } }> {
  const [pfPort] = await freePorts(1);
  const sink = await startSmtpSink();
  const sinkPort = sink.port;
  const pf = await startPostfix({ port: pfPort!, relayhost: `[127.0.0.1]:${sinkPort}`, main: { default_destination_concurrency_limit: '20' } });
  try {
    const t0 = Date.now();
    const p = probes(pfPort!, SIZE);
    await smtpSource(pfPort!, LOAD);
    const nProbes = await p.stop();
    while (sink.received() < MESSAGES + nProbes && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
    const seconds = (Date.now() - t0) / 1000;
    const lat = [...pf.log().matchAll(/to=<probe-\d+@probe\.test>.* delay=([\d.]+),/g)].map((m) => Number(m[1]) * 1000);
    return { rate: MESSAGES / seconds, seconds, lat: summarize(lat) };
  } finally {
    await pf.stop();
    sink.stop();
  }
}

export async function benchE2e(): Promise<void> {
  if (!postfixReady()) return;
  console.log(`${MESSAGES} messages of ${SIZE} bytes, ${SESSIONS} smtp-source sessions, one message per connection; forwarder.relay.maxConnections and engine.concurrency ${TUNED}`);
  const a = await benchPostino();
  console.log(`postino  forwarder→listener→engine→smtp-sink: ${fmt(a.rate)} msgs/s (${fmt(a.seconds)} s)  latency p50 ${fmt(a.lat.p50, 0)} ms  p99 ${fmt(a.lat.p99, 0)} ms  peak RSS ${fmt(a.rss)} MiB (all processes)`);
  const b = await benchPostfix();
  console.log(`postfix  smtpd→qmgr→smtp→smtp-sink:               ${fmt(b.rate)} msgs/s (${fmt(b.seconds)} s)  latency p50 ${fmt(b.lat.p50, 0)} ms  p99 ${fmt(b.lat.p99, 0)} ms`);
  console.log(`ratio postino/postfix: ${fmt(a.rate / b.rate, 2)} (goal ≥ 0.50)`);
}
