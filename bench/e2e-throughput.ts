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
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { freePorts } from '../test/helpers/ports.js';
import { startPostfix } from '../test/helpers/postfix.js';
import { postfixReady } from './postfix-peer.js';
import { CLI, tempDir, upConfig } from '../test/helpers/postino.js';
import { readSecret } from '../common/secrets.js';
import { fmt, summarize } from './stats.js';

const run = promisify(execFile);
const SESSIONS = 20;
const MESSAGES = Number(process.env.BENCH_E2E_MESSAGES ?? 3000);
const SIZE = 2048;
/** Upstream connections of the forwarder and rewrap slots of the engine in this benchmark. */
const TUNED = Number(process.env.BENCH_E2E_CONCURRENCY ?? 16);

async function smtpSource(port: number): Promise<void> {
  await run('smtp-source', ['-s', String(SESSIONS), '-l', String(SIZE), '-m', String(MESSAGES), '-f', 'shop@example.org', '-t', 'customer@example.com', `127.0.0.1:${port}`], { maxBuffer: 1 << 24 });
}

/** SIZE bytes of body in 78-octet lines: the listener refuses lines over 998 octets (RFC 5322 2.1.1). */
const PROBE_MESSAGE = `From: probe@example.org\r\nTo: probe@probe.test\r\nSubject: probe\r\n\r\n${('x'.repeat(76) + '\r\n').repeat(Math.ceil(SIZE / 78))}`;

/** Sends a probe every second until stopped; each probe's recipient carries its send time. */
function probes(port: number): { stop(): Promise<number> } {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, pool: false });
  let n = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      await t.sendMail({ envelope: { from: 'probe@example.org', to: [`probe-${at}@probe.test`] }, raw: PROBE_MESSAGE }).then(
        () => n++,
        () => undefined,
      );
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      t.close();
      return n;
    },
  };
}

async function groupRssMiB(pid: number): Promise<number> {
  const r = await run('ps', ['-o', 'rss=', '-g', String(pid)]).catch(() => ({ stdout: '' }));
  return r.stdout.split('\n').reduce((s, l) => s + (Number(l.trim()) || 0), 0) / 1024;
}

/**
 * `postino up` with its logs going to a file (as under systemd), not through
 * this process: parsing them here would take CPU from the system under test.
 */
async function startUpLoggingToFile(dataDir: string, config: Record<string, unknown>, ports: number[]): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  const file = path.join(dataDir, 'bench-config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  const out = fs.openSync(path.join(dataDir, 'postino.log'), 'w');
  const child = spawn(process.execPath, [CLI, 'up', '--config', file], { env: { ...process.env, POSTINO_DATA: dataDir }, stdio: ['ignore', out, out], detached: true });
  const until = Date.now() + 30_000;
  for (const port of ports) {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > until) throw new Error(`postino up not listening on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return {
    child,
    async stop() {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    },
  };
}

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
  const p = probes(c.ports.forwarder);
  await smtpSource(c.ports.forwarder);
  const nProbes = await p.stop();
  const total = MESSAGES + nProbes;
  while (sink.received() < total && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
  const seconds = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  clearInterval(poller);
  console.log(`  (largest backlog seen: forwarder spool ${backlog.forwarder}, hosted intake ${backlog.intake}, delivery ${backlog.delivery}; logs in ${dataDir}/postino.log)`);
  // Probe latency: acceptance at the forwarder (in the recipient) to the engine's `delivered` event.
  const lat: number[] = [];
  const feed = await fetch(`http://127.0.0.1:${c.ports.http}/api/events?after=0&limit=10000&type=delivered`, { headers: { authorization: `Bearer ${key}` } });
  for (const line of (await feed.text()).split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as { type: string; recipient?: string; at: string };
    const m = /^probe-(\d+)@/.exec(e.recipient ?? '');
    if (e.type === 'delivered' && m) lat.push(Date.parse(e.at) - Number(m[1]));
  }
  await up.stop();
  sink.stop();
  return { rate: MESSAGES / seconds, seconds, lat: summarize(lat), rss: peak };
}

/** Postfix's smtp-sink (accepts and discards), counting messages from its `-c` counters. */
async function startSmtpSink(): Promise<{ port: number; received(): number; stop(): void }> {
  const [port] = await freePorts(1);
  const sink = spawn('smtp-sink', ['-u', 'postfix', '-c', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let received = 0;
  sink.stdout!.setEncoding('utf8');
  sink.stdout!.on('data', (d: string) => {
    // "-c" prints running counters, "\r"-separated: "sess=N quit=N mesg=N".
    for (const m of d.matchAll(/mesg=(\d+)/g)) received = Math.max(received, Number(m[1]));
  });
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port: port!, host: '127.0.0.1' }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port: port!, received: () => received, stop: () => void sink.kill('SIGTERM') };
}

async function benchPostfix(): Promise<{ rate: number; seconds: number; lat: { p50: number; p99: number } }> {
  const [pfPort] = await freePorts(1);
  const sink = await startSmtpSink();
  const sinkPort = sink.port;
  const pf = await startPostfix({ port: pfPort!, relayhost: `[127.0.0.1]:${sinkPort}`, main: { default_destination_concurrency_limit: '20' } });
  try {
    const t0 = Date.now();
    const p = probes(pfPort!);
    await smtpSource(pfPort!);
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
