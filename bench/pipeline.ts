/*
 * npm run bench -- pipeline: the whole pipeline as users run it, against
 * Postfix in the same run (issue #17).
 *
 * Postino: `postino up` with its defaults (forwarder, STARTTLS hop, listener,
 * engine) delivering to Postfix's smtp-sink. Postfix: a Postfix instance of
 * our own (fsynced queue, test/helpers/postfix.ts) relaying to smtp-sink.
 * Load: smtp-source, 20 sessions, at 2 KB, 100 KB and 1 MB, one message per
 * connection and with connection reuse (-d); the two systems alternate, 3
 * runs each, and the table shows medians:
 *   intake   messages/s until smtp-source has its last 250
 *   e2e      messages/s until smtp-sink has counted the last one
 *   p50/p99  latency of probe messages sent once a second during the load
 *            (Postino: accepted at the forwarder → `delivered` event; Postfix: delay=)
 *   CPU      busy CPU seconds per 1,000 messages: machine-wide (smtp-source and
 *            smtp-sink included on both sides) and per Postino process
 *   RSS      peak resident memory per Postino process
 * Each run starts with an unmeasured warm-up through the same system, as many messages as the
 * measured load (same size, same connection mode), delivered before the measured load starts:
 * Postfix forks its daemons on first use, V8 compiles the hot paths; a relay in service is
 * past both, so a cold start measures neither system as users run it. Why that many: with the
 * 300 messages this used to send, `--trace-opt` showed V8 still optimizing 100–200 functions a
 * second of every Postino process through the measured load (decaying to 20–40 a second only
 * after ~15 s), and a system-wide `perf` put its background compiler threads at ~14% of
 * Postino's CPU in that window (issue #17); each run starts fresh processes, unlike
 * `bench -- forwarder`, whose one forwarder has taken thousands of messages before its `-d` load.
 * Knobs (environment): BENCH_PIPELINE_RUNS (3), BENCH_PIPELINE_SIZES (e.g. "2048,102400"),
 * BENCH_PIPELINE_SCALE (message counts × this; 1), BENCH_CPU_PROF_DIR (a CPU profile of each Postino
 * process there, one file per process and run: pipeline-parts.ts), BENCH_NODE_FLAGS (more node flags for
 * each Postino process, e.g. --perf-basic-prof).
 */
import { readSecret } from '../common/secrets.js';
import { freePorts } from '../test/helpers/ports.js';
import { startPostfix } from '../test/helpers/postfix.js';
import { removeTempDir, tempDir, upConfig } from '../test/helpers/postino.js';
import { machineCpuSeconds, probeLatencies, probes, processCpuSeconds, processRssMiB, smtpSource, startSmtpSink, startUpLoggingToFile, upChildren, type SourceLoad } from './pipeline-parts.js';
import { postfixReady } from './postfix-peer.js';
import { fmt, summarize } from './stats.js';

const SESSIONS = 20;
const RUNS = Number(process.env.BENCH_PIPELINE_RUNS ?? 3);
const SCALE = Number(process.env.BENCH_PIPELINE_SCALE ?? 1);
/**
 * Message counts sized for ~5-15 s of load per run on 2 cores, end to end. The first counts
 * (3,000 / 1,000 / 150) were sized so when the pipeline was slower; by the end of issue #17's
 * work a 1 MB run's intake lasted under a second and a 100 KB run's under two, so the 20
 * sessions' ramp-up and the last messages' tail decided a good part of the figure, and the same
 * code gave 100 KB end to end ratios of 0.69-1.17 from run to run (BENCH_PIPELINE_SCALE=2).
 */
const SIZES: Array<{ size: number; messages: number }> = [
  { size: 2 * 1024, messages: 6000 },
  { size: 100 * 1024, messages: 3000 },
  { size: 1024 * 1024, messages: 800 },
].filter((s) => !process.env.BENCH_PIPELINE_SIZES || process.env.BENCH_PIPELINE_SIZES.split(',').map(Number).includes(s.size));
const ROLES = ['forwarder', 'hosted', 'sink'] as const;

interface Result {
  intake: number;
  e2e: number;
  p50: number;
  p99: number;
  machineCpu: number;
  cpu: Partial<Record<(typeof ROLES)[number], number>>;
  rss: Partial<Record<(typeof ROLES)[number], number>>;
}

async function waitSink(received: () => number, total: number, t0: number): Promise<void> {
  while (received() < total && Date.now() - t0 < 900_000) await new Promise((r) => setTimeout(r, 50));
  if (received() < total) throw new Error(`smtp-sink counted ${received()} of ${total}`);
}

/** The unmeasured warm-up (see the header); resolves once the sink has all of it. */
async function warmUp(port: number, load: SourceLoad, received: () => number): Promise<number> {
  await smtpSource(port, load);
  await waitSink(received, load.messages, Date.now());
  return load.messages;
}

async function runPostino(load: SourceLoad): Promise<Result> {
  const dataDir = tempDir('bench-pipeline');
  const sink = await startSmtpSink();
  // The defaults of `postino up`: only the ports and the MTA cluster (smtp-sink) are set. The log level
  // too is the default (info: a line per message and stage), as Postfix logs each message to its maillog.
  const c = await upConfig(() => ({ delivery: { relays: [`smtp://127.0.0.1:${sink.port}`] } }));
  const up = await startUpLoggingToFile(dataDir, c.config, [c.ports.forwarder, c.ports.listener, c.ports.http, c.ports.sink]);
  try {
    const pids = await upChildren(up.child.pid!);
    const warm = await warmUp(c.ports.forwarder, load, sink.received);
    const rss: Result['rss'] = {};
    const sampler = setInterval(() => {
      for (const r of ROLES) if (pids[r]) rss[r] = Math.max(rss[r] ?? 0, processRssMiB(pids[r]!));
    }, 200);
    const cpu0 = Object.fromEntries(ROLES.map((r) => [r, pids[r] ? processCpuSeconds(pids[r]!) : 0]));
    const m0 = machineCpuSeconds();
    const t0 = Date.now();
    const p = probes(c.ports.forwarder, load.size);
    await smtpSource(c.ports.forwarder, load);
    const intakeSeconds = (Date.now() - t0) / 1000;
    const nProbes = await p.stop();
    await waitSink(sink.received, warm + load.messages + nProbes, t0);
    const seconds = (Date.now() - t0) / 1000;
    const m1 = machineCpuSeconds();
    clearInterval(sampler);
    const per1000 = 1000 / load.messages;
    const cpu: Result['cpu'] = {};
    for (const r of ROLES) if (pids[r]) cpu[r] = (processCpuSeconds(pids[r]!) - cpu0[r]!) * per1000;
    const key = readSecret(dataDir, 'api-key')!;
    const feed = await fetch(`http://127.0.0.1:${c.ports.http}/api/events?after=0&limit=10000&type=delivered`, { headers: { authorization: `Bearer ${key}` } });
    const lat = summarize(probeLatencies(await feed.text()));
    return { intake: load.messages / intakeSeconds, e2e: load.messages / seconds, p50: lat.p50, p99: lat.p99, machineCpu: (m1 - m0) * per1000, cpu, rss };
  } finally {
    await up.stop();
    sink.stop();
    removeTempDir(dataDir);
  }
}

async function runPostfix(load: SourceLoad): Promise<Result> {
  const [pfPort] = await freePorts(1);
  const sink = await startSmtpSink();
  const pf = await startPostfix({ port: pfPort!, relayhost: `[127.0.0.1]:${sink.port}`, main: { default_destination_concurrency_limit: '20' } });
  try {
    const warm = await warmUp(pfPort!, load, sink.received);
    const m0 = machineCpuSeconds();
    const t0 = Date.now();
    const p = probes(pfPort!, load.size);
    await smtpSource(pfPort!, load);
    const intakeSeconds = (Date.now() - t0) / 1000;
    const nProbes = await p.stop();
    await waitSink(sink.received, warm + load.messages + nProbes, t0);
    const seconds = (Date.now() - t0) / 1000;
    const machineCpu = (machineCpuSeconds() - m0) * (1000 / load.messages);
    const lat = summarize([...pf.log().matchAll(/to=<probe-\d+@probe\.test>.* delay=([\d.]+),/g)].map((m) => Number(m[1]) * 1000));
    return { intake: load.messages / intakeSeconds, e2e: load.messages / seconds, p50: lat.p50, p99: lat.p99, machineCpu, cpu: {}, rss: {} };
  } finally {
    await pf.stop();
    sink.stop();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!;
}

function medianResult(rs: Result[]): Result {
  const m = (f: (r: Result) => number | undefined): number => median(rs.map(f).filter((x): x is number => x !== undefined));
  return {
    intake: m((r) => r.intake),
    e2e: m((r) => r.e2e),
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    machineCpu: m((r) => r.machineCpu),
    cpu: Object.fromEntries(ROLES.map((k) => [k, m((r) => r.cpu[k])])),
    rss: Object.fromEntries(ROLES.map((k) => [k, Math.max(0, ...rs.map((r) => r.rss[k] ?? 0))])),
  };
}

function sizeLabel(n: number): string {
  return n >= 1024 * 1024 ? `${n / 1024 / 1024} MB` : `${n / 1024} KB`;
}

export async function benchPipeline(): Promise<void> {
  if (!postfixReady()) return;
  console.log(`postino up (defaults) vs Postfix, both into smtp-sink; smtp-source ${SESSIONS} sessions; ${RUNS} alternating runs each, medians`);
  console.log('| message | connections | Postfix intake | Postino intake | ratio | Postfix e2e | Postino e2e | ratio | p50/p99 ms Postfix | p50/p99 ms Postino | CPU s/1000 Postfix | CPU s/1000 Postino (fwd/hosted) | peak RSS MiB fwd/hosted |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const { size, messages } of SIZES) {
    for (const reuse of [false, true]) {
      const load: SourceLoad = { sessions: SESSIONS, size, messages: Math.max(SESSIONS, Math.round(messages * SCALE)), reuse };
      const pf: Result[] = [];
      const po: Result[] = [];
      for (let i = 0; i < RUNS; i++) {
        pf.push(await runPostfix(load));
        po.push(await runPostino(load));
      }
      const a = medianResult(pf);
      const b = medianResult(po);
      console.log(
        `| ${sizeLabel(size)} | ${reuse ? 'reused (-d)' : 'one per message'} | ${fmt(a.intake, 0)}/s | ${fmt(b.intake, 0)}/s | ${fmt(b.intake / a.intake, 2)} | ${fmt(a.e2e, 0)}/s | ${fmt(b.e2e, 0)}/s | ${fmt(b.e2e / a.e2e, 2)} | ` +
          `${fmt(a.p50, 0)}/${fmt(a.p99, 0)} | ${fmt(b.p50, 0)}/${fmt(b.p99, 0)} | ${fmt(a.machineCpu, 1)} | ${fmt(b.machineCpu, 1)} (${fmt(b.cpu.forwarder ?? 0, 1)}/${fmt(b.cpu.hosted ?? 0, 1)}) | ${fmt(b.rss.forwarder ?? 0, 0)}/${fmt(b.rss.hosted ?? 0, 0)} |`,
      );
    }
  }
}
