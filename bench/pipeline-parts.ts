/*
 * pipeline-parts.ts — what the end-to-end benchmarks (e2e, pipeline) share:
 * Postfix's smtp-source as the load and smtp-sink as the MTA cluster,
 * `postino up` logging to a file as under systemd, latency probes, and
 * RSS/CPU readings of process groups and of the whole machine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { freePorts } from '../test/helpers/ports.js';
import { CLI } from '../test/helpers/postino.js';

const run = promisify(execFile);

export interface SourceLoad {
  sessions: number;
  size: number;
  messages: number;
  /** smtp-source -d: keep each connection for the next message. */
  reuse: boolean;
}

/** Postfix's smtp-source; resolves when every message was answered. */
export async function smtpSource(port: number, l: SourceLoad): Promise<void> {
  const args = ['-s', String(l.sessions), '-l', String(l.size), '-m', String(l.messages), '-f', 'shop@example.org', '-t', 'customer@example.com'];
  if (l.reuse) args.push('-d');
  await run('smtp-source', [...args, `127.0.0.1:${port}`], { maxBuffer: 1 << 24 });
}

/** `size` bytes of body in 78-octet lines: the listener refuses lines over 998 octets (RFC 5322 2.1.1). */
function probeMessage(size: number): string {
  return `From: probe@example.org\r\nTo: probe@probe.test\r\nSubject: probe\r\n\r\n${('x'.repeat(76) + '\r\n').repeat(Math.ceil(size / 78))}`;
}

/** Sends a probe every second until stopped; each probe's recipient carries its send time. */
export function probes(port: number, size: number): { stop(): Promise<number> } {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, pool: false });
  const raw = probeMessage(size);
  let n = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      await t.sendMail({ envelope: { from: 'probe@example.org', to: [`probe-${at}@probe.test`] }, raw }).then(
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

/** Probe latencies (ms) from a `delivered` feed: send time in the recipient → the event's time. */
export function probeLatencies(ndjson: string): number[] {
  const out: number[] = [];
  for (const line of ndjson.split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as { type: string; recipient?: string; at: string };
    const m = /^probe-(\d+)@/.exec(e.recipient ?? '');
    if (e.type === 'delivered' && m) out.push(Date.parse(e.at) - Number(m[1]));
  }
  return out;
}

/** Resident memory of every process in a process group, MiB. */
export async function groupRssMiB(pgid: number): Promise<number> {
  const r = await run('ps', ['-o', 'rss=', '-g', String(pgid)]).catch(() => ({ stdout: '' }));
  return r.stdout.split('\n').reduce((s, l) => s + (Number(l.trim()) || 0), 0) / 1024;
}

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** CPU seconds (user + system) so far of what a /proc stat file describes (a process, or one thread: /proc/<pid>/task/<tid>/stat); 0 once it is gone. */
function statCpuSeconds(file: string): number {
  try {
    const stat = fs.readFileSync(file, 'utf8');
    // Fields after the command name (which may hold spaces) in parentheses: utime is the 14th field, stime the 15th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) of one process so far, from /proc/<pid>/stat; 0 once it is gone. */
export function processCpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** CPU seconds so far of a process's main thread (the event loop: a Node process's limit) and of all its other threads together. */
export function threadCpuSeconds(pid: number): { main: number; others: number } {
  let others = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) if (tid !== String(pid)) others += statCpuSeconds(`/proc/${pid}/task/${tid}/stat`);
  return { main: statCpuSeconds(`/proc/${pid}/task/${pid}/stat`), others };
}

/** Machine-wide busy CPU seconds (all cores; everything but idle and iowait) from /proc/stat. */
export function machineCpuSeconds(): number {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
}

/** The children of `postino up` by role, from their command lines. */
export async function upChildren(pgid: number): Promise<Record<string, number>> {
  const r = await run('ps', ['-o', 'pid=,args=', '-g', String(pgid)]);
  const out: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\d+)\s+.*\bcli\.js (forwarder|hosted|sink)\b/.exec(line);
    if (m) out[m[2]!] = Number(m[1]);
  }
  return out;
}

async function waitListening(ports: number[], what: string, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (const port of ports) {
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > until) throw new Error(`${what} not listening on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * `postino up` with its logs going to a file (as under systemd), not through
 * this process: parsing them here would take CPU from the system under test.
 */
export async function startUpLoggingToFile(dataDir: string, config: Record<string, unknown>, ports: number[]): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  return startLoggingToFile('up', dataDir, config, ports);
}

/**
 * Node flags for every Postino process a bench starts, from the environment:
 * BENCH_CPU_PROF_DIR, a V8 CPU profile of each process (`postino up` hands its own flags to the
 * processes it starts), written there when it stops, for finding where the time goes;
 * BENCH_NODE_FLAGS, more flags, space-separated (e.g. --perf-basic-prof for `perf`, a V8 setting to compare).
 */
export function benchNodeFlags(): string[] {
  const prof = process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(process.env.BENCH_CPU_PROF_DIR)}`] : [];
  return [...prof, ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)];
}

/** `postino <role>` (up, hosted, forwarder) the same way, its log in <dataDir>/postino-<role>.log. */
export async function startLoggingToFile(role: 'up' | 'hosted' | 'forwarder', dataDir: string, config: Record<string, unknown>, ports: number[]): Promise<{ child: ChildProcess; stop(): Promise<void> }> {
  const file = path.join(dataDir, `bench-${role}.json`);
  fs.writeFileSync(file, JSON.stringify(config));
  const out = fs.openSync(path.join(dataDir, role === 'up' ? 'postino.log' : `postino-${role}.log`), 'w');
  const child = spawn(process.execPath, [...benchNodeFlags(), CLI, role, '--config', file], { env: { ...process.env, POSTINO_DATA: dataDir }, stdio: ['ignore', out, out], detached: true });
  await waitListening(ports, `postino ${role}`);
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return {
    child,
    async stop() {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    },
  };
}

/** Stops a child process started here (SIGTERM) and waits for it to be gone; one already gone is left be. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

/** Postfix's smtp-sink (accepts and discards), counting messages from its `-c` counters. */
export async function startSmtpSink(): Promise<{ port: number; pid: number; received(): number; stop(): void }> {
  const [port] = await freePorts(1);
  const sink = spawn('smtp-sink', ['-u', 'postfix', '-c', `127.0.0.1:${port}`, '1024'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let received = 0;
  sink.stdout!.setEncoding('utf8');
  sink.stdout!.on('data', (d: string) => {
    // "-c" prints running counters, "\r"-separated: "sess=N quit=N mesg=N".
    for (const m of d.matchAll(/mesg=(\d+)/g)) received = Math.max(received, Number(m[1]));
  });
  await waitListening([port!], 'smtp-sink', 5_000);
  return { port: port!, pid: sink.pid!, received: () => received, stop: () => void sink.kill('SIGTERM') };
}

/** Resident memory of one process, MiB (0 once it is gone). */
export function processRssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}
