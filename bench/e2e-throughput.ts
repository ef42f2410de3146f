/*
 * End-to-end throughput: Postfix's smtp-source (20 sessions, 2 KB messages,
 * one message per connection) → forwarder → (STARTTLS) listener → engine →
 * capture sink, all started by `postino up`; and in the same run the same load
 * through a Postfix instance of our own (test/helpers/postfix.ts) relaying to
 * Postfix's smtp-sink. Throughput counts from the first connection until the
 * last message is in the sink (the sink's fsynced .json marker; smtp-sink's
 * counter for Postfix). Latency: probe messages sent once a second during the
 * load whose recipient carries the send time (Postino: sink receivedAt;
 * Postfix: its per-message `delay=` in the mail log). Peak RSS: the sum over
 * the postino processes.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { freePorts } from '../test/helpers/ports.js';
import { postfixMissing, startPostfix } from '../test/helpers/postfix.js';
import { startUp, tempDir, upConfig } from '../test/helpers/postino.js';
import { fmt, summarize } from './stats.js';

const run = promisify(execFile);
const SESSIONS = 20;
const MESSAGES = Number(process.env.BENCH_E2E_MESSAGES ?? 3000);
const SIZE = 2048;

async function smtpSource(port: number): Promise<void> {
  await run('smtp-source', ['-s', String(SESSIONS), '-l', String(SIZE), '-m', String(MESSAGES), '-f', 'shop@example.org', '-t', 'customer@example.com', `127.0.0.1:${port}`], { maxBuffer: 1 << 24 });
}

/** Sends a probe every second until stopped; each probe's recipient carries its send time. */
function probes(port: number): { stop(): Promise<number> } {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, pool: false });
  let n = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      await t.sendMail({ envelope: { from: 'probe@example.org', to: [`probe-${at}@probe.test`] }, raw: `From: probe@example.org\r\nTo: probe@probe.test\r\nSubject: probe\r\n\r\n${'x'.repeat(SIZE)}\r\n` }).then(
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

function countJson(dir: string): number {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).length : 0;
}

async function groupRssMiB(pid: number): Promise<number> {
  const r = await run('ps', ['-o', 'rss=', '-g', String(pid)]).catch(() => ({ stdout: '' }));
  return r.stdout.split('\n').reduce((s, l) => s + (Number(l.trim()) || 0), 0) / 1024;
}

async function benchPostino(): Promise<{ rate: number; seconds: number; lat: { p50: number; p99: number }; rss: number }> {
  const dataDir = tempDir('bench-e2e');
  const c = await upConfig();
  const up = await startUp(dataDir, c.config);
  const sinkDir = path.join(dataDir, 'sink');
  let peak = 0;
  const sampler = setInterval(() => void groupRssMiB(up.child.pid!).then((m) => (peak = Math.max(peak, m))), 250);
  const t0 = Date.now();
  const p = probes(c.ports.forwarder);
  await smtpSource(c.ports.forwarder);
  const nProbes = await p.stop();
  const total = MESSAGES + nProbes;
  while (countJson(sinkDir) < total && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
  const seconds = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  const lat: number[] = [];
  for (const f of fs.readdirSync(sinkDir).filter((x) => x.endsWith('.json'))) {
    const j = JSON.parse(fs.readFileSync(path.join(sinkDir, f), 'utf8')) as { rcptTo: string[]; receivedAt: string };
    const m = /^probe-(\d+)@/.exec(j.rcptTo[0] ?? '');
    if (m) lat.push(Date.parse(j.receivedAt) - Number(m[1]));
  }
  await up.stop();
  return { rate: MESSAGES / seconds, seconds, lat: summarize(lat), rss: peak };
}

async function benchPostfix(): Promise<{ rate: number; seconds: number; lat: { p50: number; p99: number } }> {
  const [pfPort, sinkPort] = await freePorts(2);
  const sink = spawn('smtp-sink', ['-u', 'postfix', '-c', `127.0.0.1:${sinkPort}`, '1024'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let received = 0;
  sink.stdout!.setEncoding('utf8');
  sink.stdout!.on('data', (d: string) => {
    // "-c" prints running counters, "\r"-separated: "sess=N quit=N mesg=N".
    for (const m of d.matchAll(/mesg=(\d+)/g)) received = Math.max(received, Number(m[1]));
  });
  const pf = await startPostfix({ port: pfPort!, relayhost: `[127.0.0.1]:${sinkPort}`, main: { default_destination_concurrency_limit: '20' } });
  try {
    const t0 = Date.now();
    const p = probes(pfPort!);
    await smtpSource(pfPort!);
    const nProbes = await p.stop();
    while (received < MESSAGES + nProbes && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
    const seconds = (Date.now() - t0) / 1000;
    const lat = [...pf.log().matchAll(/to=<probe-\d+@probe\.test>.* delay=([\d.]+),/g)].map((m) => Number(m[1]) * 1000);
    return { rate: MESSAGES / seconds, seconds, lat: summarize(lat) };
  } finally {
    await pf.stop();
    sink.kill('SIGTERM');
  }
}

export async function benchE2e(): Promise<void> {
  const missing = postfixMissing();
  if (missing) {
    console.log(`skipped: ${missing}`);
    return;
  }
  console.log(`${MESSAGES} messages of ${SIZE} bytes, ${SESSIONS} smtp-source sessions, one message per connection`);
  const a = await benchPostino();
  console.log(`postino  forwarder→listener→engine→sink: ${fmt(a.rate)} msgs/s (${fmt(a.seconds)} s)  latency p50 ${fmt(a.lat.p50, 0)} ms  p99 ${fmt(a.lat.p99, 0)} ms  peak RSS ${fmt(a.rss)} MiB (all processes)`);
  const b = await benchPostfix();
  console.log(`postfix  smtpd→qmgr→smtp→smtp-sink:       ${fmt(b.rate)} msgs/s (${fmt(b.seconds)} s)  latency p50 ${fmt(b.lat.p50, 0)} ms  p99 ${fmt(b.lat.p99, 0)} ms`);
  console.log(`ratio postino/postfix: ${fmt(a.rate / b.rate, 2)} (goal ≥ 0.50)`);
}
