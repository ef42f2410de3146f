/*
 * npm run bench -- forwarder
 *
 * Messages/second the forwarder accepts from Postfix's smtp-source (20
 * sessions, one message per connection as most apps send, 2 KB and 100 KB
 * bodies; and 2 KB with connection reuse, `-d`, as a pooled client sends)
 * while it relays them to Postfix's smtp-sink — against Postfix itself
 * doing the same job in the same run: a throwaway Postfix instance (its own
 * config_directory and queue under a temp dir, smtpd on a loopback port,
 * relayhost = an smtp-sink). Both answer 250 only after an fsync, and both log
 * every message at their default level to a file, as a service does (Postfix
 * to its maillog_file, the forwarder's info lines, `accepted` and `relayed`,
 * from stdout to forwarder.log: what journald would take).
 *
 * Each size: an unmeasured warm-up for both, then three rounds taking turns
 * (Postfix, forwarder, Postfix, …), each started with both queues drained;
 * the median round of each side is printed, with all rounds. A rate round
 * runs smtp-source alone: the rate is that of the load as given, 20 sessions.
 *
 * Accept latency: then one more round per side with a probe client that sends
 * the same messages on one connection during the load and times final dot →
 * 250. Apart from the rate rounds because the probe is a 21st lock-step client:
 * at `-d` it took ~5% of the messages (~790 of a round's ~15,800) while the
 * rate counted only smtp-source's 15,000 (issue #17, twenty-eighth and
 * thirty-first rounds). Peak RSS: the forwarder
 * process's VmHWM (Postfix's is spread over many processes and not shown).
 * Machine CPU per message: busy CPU of the whole machine (/proc/stat) from the
 * start of a round until its queue has drained, over the messages of the load:
 * smtp-source, the relay under test, smtp-sink and the kernel's
 * loopback work together. Its inverse times the cores is the most that machine
 * could sustain of that load, taken and relayed, whatever the relay under test
 * did better (issue #17: on a slow day the `-d` row is bounded by it). Intake
 * alone can run above it for a round while the queue grows (Postfix's does).
 * The forwarder's main thread, CPU per message during each rate round: the same
 * build's work a message is the same, so what moves it between rounds is the
 * VM (its host's load is not reported to this guest as steal time), and the
 * round's rate moves with it (issue #17, thirty-fourth round).
 * The floor, at `-d` only: a third side taking the same rounds after the
 * forwarder, bench/intake-floor.ts (a bare Node responder that group-commits
 * each body to LevelDB before its 250: no parser library, checks, queue, log
 * or relay), a fresh one each round after its own warm-up. No Node intake of
 * this load goes faster on the same machine in the same minutes, so it tells
 * how fast the machine is that day: the same forwarder build took 0.088 ms of
 * main thread a message here on 2026-12-01 and 0.177 on the VM of 2026-12-05
 * (issue #17, thirty-fifth round).
 *
 * Needs Debian's postfix package (smtp-source, smtp-sink, postfix), installed
 * when missing (postfix-peer.ts), and root (Postfix's master must start as root).
 * The forwarder runs with the glibc allocator settings and the V8 heap flag every
 * supported way of starting it sets (`postino up`, the systemd units, the
 * Containerfile: app/allocator-env.ts, app/heap-flags.ts).
 * Side effects: temp dirs under $TMPDIR, processes it starts and stops by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts, waitForPort } from '../test/helpers/ports.js';
import { startPostfix, type Postfix } from '../test/helpers/postfix.js';
import { withAllocatorEnv } from '../app/allocator-env.js';
import { V8_HEAP_FLAGS } from '../app/heap-flags.js';
import { spawnFloor } from './floor-process.js';
import { benchNodeFlags, machineCpuSeconds, stopChild, threadCpuSeconds } from './pipeline-parts.js';
import { postfixBenchDir } from './postfix-peer.js';
import { fmt, summarize } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SESSIONS = 20;
/** Unmeasured messages before a load's rounds, per side, unless the load names its own. */
const WARMUP = 300;
/** Measured runs per side and size; the machine's own noise is ±10 % from run to run. */
const ROUNDS = 3;
const LOADS: Load[] = [
  { label: '2 KB', bytes: 2 * 1024, messages: 3000, reuse: false },
  { label: '100 KB', bytes: 100 * 1024, messages: 1000, reuse: false },
  // Issue #17's 5,000 msgs/s: the forwarder's per-message cost without the per-connection one.
  // A tenth of a round to warm up, as a relay in service is warm: V8 compiles the intake's hot
  // paths over the first few thousand messages, and a round after 300 ran at 3,900-4,750 msgs/s
  // where one after 15,000 ran at 5,842 (issue #17, twenty-eighth round). 0.3 s a side.
  { label: '2 KB, connection reuse (-d)', bytes: 2 * 1024, messages: 15000, reuse: true, warmup: 1500 },
];

interface Load {
  label: string;
  bytes: number;
  messages: number;
  /** smtp-source -d: each session sends its messages over one connection. */
  reuse: boolean;
  warmup?: number;
}

function smtpSink(port: number): ChildProcess {
  const asRoot = process.getuid?.() === 0;
  return spawn('smtp-sink', [...(asRoot ? ['-u', 'postfix'] : []), '-c', `127.0.0.1:${port}`, '1000'], { stdio: 'ignore' });
}

/** One connection, messages one after another: final dot → 250 latencies. */
async function latencyProbe(port: number, bytes: number, stop: () => boolean): Promise<number[]> {
  // No Nagle: the final dot is a separate small write, which Nagle would hold until the peer's delayed ACK (40 ms).
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  sock.setEncoding('latin1');
  let buf = '';
  let wake: (() => void) | undefined;
  sock.on('data', (d: string) => {
    buf += d;
    wake?.();
  });
  sock.on('error', () => undefined);
  const reply = async (): Promise<string> => {
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(buf);
      if (m) {
        buf = buf.slice(m[0].length);
        return m[0];
      }
      await new Promise<void>((r) => (wake = r));
    }
  };
  const cmd = async (line: string): Promise<string> => {
    sock.write(line + '\r\n');
    return reply();
  };
  await reply();
  await cmd('EHLO probe.test');
  const body = `Subject: probe\r\n\r\n${('x'.repeat(76) + '\r\n').repeat(Math.ceil(bytes / 78))}`;
  const lat: number[] = [];
  while (!stop()) {
    await cmd('MAIL FROM:<probe@example.org>');
    await cmd('RCPT TO:<sink@example.com>');
    await cmd('DATA');
    sock.write(body);
    const t = performance.now();
    sock.write('.\r\n');
    const r = await reply();
    if (r.startsWith('250')) lat.push(performance.now() - t);
  }
  sock.destroy();
  return lat;
}

interface Result {
  rate: number;
  p50: number;
  p99: number;
  /** Machine CPU ms per message, the round's drain included (see the header); set by `measured`. */
  cpuMs?: number;
  /** The main thread of the process under test (the forwarder, or the floor), CPU ms per message during the load (see the header); set by `measured`. */
  mainMs?: number;
}

/** Runs smtp-source against port; with `probe`, a latency probe runs alongside. */
async function load(port: number, l: Load, messages: number, probe = true): Promise<Result> {
  const bytes = l.bytes;
  let done = false;
  const lat = probe ? latencyProbe(port, bytes, () => done) : Promise.resolve([0]);
  const t0 = performance.now();
  // Asynchronous: the probe runs in this process during the load.
  const src = spawn('smtp-source', [...(l.reuse ? ['-d'] : []), '-s', String(SESSIONS), '-l', String(bytes), '-m', String(messages), '-f', 'app@example.org', '-t', 'to@example.com', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  src.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => src.on('exit', r));
  const secs = (performance.now() - t0) / 1000;
  done = true;
  if (code !== 0) throw new Error(`smtp-source failed: ${stderr}`);
  const latencies = await lat;
  const lt = summarize(latencies);
  return { rate: messages / secs, p50: lt.p50, p99: lt.p99 };
}

/**
 * A measured round: the load alone, then its queue drained, with the machine's CPU over both;
 * with `pid` (the forwarder's or the floor's), also that process's main-thread CPU during the load alone.
 */
async function measured(port: number, l: Load, drained: () => Promise<void>, pid?: number): Promise<Result> {
  const c0 = machineCpuSeconds();
  const m0 = pid === undefined ? 0 : threadCpuSeconds(pid).main;
  const r = await load(port, l, l.messages, false);
  if (pid !== undefined) r.mainMs = ((threadCpuSeconds(pid).main - m0) * 1000) / l.messages;
  await drained();
  r.cpuMs = ((machineCpuSeconds() - c0) * 1000) / l.messages;
  return r;
}

/** The round with the median rate. */
function median(rs: Result[]): Result {
  return [...rs].sort((a, b) => a.rate - b.rate)[Math.floor(rs.length / 2)]!;
}

/** The latency round: the same load with the probe alongside; only its latencies are kept. */
async function latencyRound(port: number, l: Load, drained: () => Promise<void>): Promise<Pick<Result, 'p50' | 'p99'>> {
  const r = await load(port, l, l.messages);
  await drained();
  return { p50: r.p50, p99: r.p99 };
}

export async function waitUntil(cond: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error('queue did not drain');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** No queue file left in the instance's incoming, active or deferred queues. */
function postfixQueueEmpty(dir: string): boolean {
  const count = (d: string): number => (fs.existsSync(d) ? fs.readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length : 0);
  return ['incoming', 'active', 'deferred', 'maildrop'].every((q) => count(path.join(dir, 'spool', q)) === 0);
}

/** A call to the forwarder's admin API with the token it wrote at start (forwarder/admin-api.ts). */
export function forwarderAdmin(adminPort: number, dataDir: string, method: 'GET' | 'POST', route: string): Promise<Response> {
  const token = fs.readFileSync(path.join(dataDir, 'secrets', 'admin-token'), 'utf8').trim();
  return fetch(`http://127.0.0.1:${adminPort}${route}`, { method, headers: { authorization: `Bearer ${token}` } });
}

export async function forwarderQueueEmpty(adminPort: number, dataDir: string): Promise<boolean> {
  const s = (await (await forwarderAdmin(adminPort, dataDir, 'GET', '/status')).json()) as { queued: number; inFlight: number };
  return s.queued === 0 && s.inFlight === 0;
}

function peakRssMiB(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(s)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

/** The forwarder at its defaults but for the ports and a plain relay to `sinkPort`; its log in <dir>/forwarder.log. */
export async function startForwarder(dir: string, port: number, adminPort: number, sinkPort: number): Promise<ChildProcess> {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = path.join(dir, 'forwarder.json');
  fs.writeFileSync(cfg, JSON.stringify({ forwarder: { smtp: { port }, admin: { port: adminPort }, relay: { urls: [`smtp://127.0.0.1:${sinkPort}`], requireTls: false } } }));
  const out = fs.openSync(path.join(dir, 'forwarder.log'), 'w');
  const child = spawn(process.execPath, [...V8_HEAP_FLAGS, ...benchNodeFlags(), path.join(ROOT, 'bin', 'postino.js'), 'forwarder', '--config', cfg], { env: withAllocatorEnv({ ...process.env, POSTINO_DATA: dir }), stdio: ['ignore', out, out] });
  fs.closeSync(out); // the child has its own copy
  await waitForPort(port);
  return child;
}

function line(who: string, r: Result): string {
  const cores = os.availableParallelism();
  const cpu = r.cpuMs ? `   machine CPU ${fmt(r.cpuMs, 2)} ms/msg (sustained at most ${fmt((cores * 1000) / r.cpuMs, 0)}/s on ${cores} cores)` : '';
  return `    ${who.padEnd(10)} ${fmt(r.rate, 0).padStart(6)} msgs/s accepted   accept latency p50 ${fmt(r.p50, 2)} ms  p99 ${fmt(r.p99, 2)} ms${cpu}`;
}

export async function benchForwarder(): Promise<void> {
  const base = postfixBenchDir('fwd');
  if (!base) return;
  const [pfPort, pfSinkPort, fwdPort, fwdAdmin, fwdSinkPort, floorPort] = (await freePorts(6)) as [number, number, number, number, number, number];
  const sinks = [smtpSink(pfSinkPort), smtpSink(fwdSinkPort)];
  let pf: Postfix | undefined;
  let postfixOk = true;
  let fwd: ChildProcess | undefined;
  let floor: ChildProcess | undefined;
  try {
    try {
      // Postfix as shipped, but for the relayhost; no client connection limits (one client runs the load).
      pf = await startPostfix({ port: pfPort, relayhost: `[127.0.0.1]:${pfSinkPort}`, main: { smtpd_client_connection_count_limit: '0' } });
    } catch (e) {
      postfixOk = false;
      console.log(`  Postfix comparison instance did not start, forwarder measured alone: ${(e as Error).message}`);
    }
    fwd = await startForwarder(path.join(base, 'forwarder'), fwdPort, fwdAdmin, fwdSinkPort);
    console.log(`smtp-source, ${SESSIONS} sessions, one message per connection unless -d, both relaying to smtp-sink:`);
    const drained = {
      // Without a Postfix there is no queue to wait for: the forwarder is measured alone.
      postfix: async () => (pf ? waitUntil(() => postfixQueueEmpty(pf!.dir)) : undefined),
      forwarder: () => waitUntil(() => forwarderQueueEmpty(fwdAdmin, path.join(base, 'forwarder'))),
    };
    for (const l of LOADS) {
      const warmup = l.warmup ?? WARMUP;
      console.log(`  ${l.label} × ${l.messages}, ${ROUNDS} rounds taking turns, median (each after ${warmup} unmeasured, queues drained before each run; latency from one more round with a probe client):`);
      // Warm-up, not measured: Postfix's master forks its smtpd, cleanup and smtp
      // processes on first use, and V8 compiles the forwarder's hot paths.
      if (postfixOk) await load(pfPort, l, warmup, false);
      await load(fwdPort, l, warmup, false);
      const ps: Result[] = [];
      const fs_: Result[] = [];
      const fl_: Result[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        if (postfixOk) {
          await drained.postfix();
          await drained.forwarder();
          ps.push(await measured(pfPort, l, drained.postfix));
        }
        await drained.postfix();
        await drained.forwarder();
        fs_.push(await measured(fwdPort, l, drained.forwarder, fwd.pid));
        // The -d load's yardstick (see the header), after the forwarder's round: a fresh floor
        // each round, as the forwarder starts each on a compacted spool (the floor keeps every
        // body it takes, and LevelDB's compactions of a growing database would run during it).
        if (l.reuse) {
          const dir = path.join(base, `floor-${round}`);
          floor = await spawnFloor(floorPort, dir, 'raw');
          await load(floorPort, l, warmup, false);
          fl_.push(await measured(floorPort, l, async () => undefined, floor.pid));
          await stopChild(floor);
          floor = undefined;
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
      // One latency round a side, with the probe, after the rate rounds (see the header).
      let pl: Pick<Result, 'p50' | 'p99'> | undefined;
      if (postfixOk) {
        await drained.forwarder();
        pl = await latencyRound(pfPort, l, drained.postfix);
      }
      await drained.postfix();
      const fl = await latencyRound(fwdPort, l, drained.forwarder);
      const p = ps.length ? { ...median(ps), ...pl } : undefined;
      const f = { ...median(fs_), ...fl };
      if (p) console.log(line('postfix', p) + `   (rounds: ${ps.map((r) => fmt(r.rate, 0)).join(', ')})`);
      console.log(line('forwarder', f) + `   (rounds: ${fs_.map((r) => fmt(r.rate, 0)).join(', ')}; its main thread ${fs_.map((r) => fmt(r.mainMs ?? NaN, 3)).join(', ')} ms/msg)`);
      if (p) console.log(`    ratio forwarder/postfix: ${fmt(f.rate / p.rate, 2)}`);
      if (fl_.length) {
        const m = median(fl_);
        console.log(`    ${'floor'.padEnd(10)} ${fmt(m.rate, 0).padStart(6)} msgs/s accepted   (rounds: ${fl_.map((r) => fmt(r.rate, 0)).join(', ')}; its main thread ${fl_.map((r) => fmt(r.mainMs ?? NaN, 3)).join(', ')} ms/msg)   [bench/intake-floor.ts: bare Node responder + LevelDB group commit, no relay]`);
        console.log(`    ratio forwarder/floor: ${fmt(f.rate / m.rate, 2)}`);
      }
    }
    console.log(`  forwarder peak RSS: ${peakRssMiB(fwd.pid!)} MiB`);
    if (!postfixOk) console.log('  (no Postfix figures: see above)');
  } finally {
    if (floor) await stopChild(floor);
    if (fwd) await stopChild(fwd);
    await pf?.stop();
    for (const s of sinks) s.kill('SIGTERM');
    fs.rmSync(base, { recursive: true, force: true });
  }
}
