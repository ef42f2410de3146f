/*
 * npm run bench -- forwarder
 *
 * Messages/second the forwarder accepts from Postfix's smtp-source (20
 * sessions, one message per connection as most apps send, 2 KB and 100 KB
 * bodies) while it relays them to Postfix's smtp-sink — against Postfix itself
 * doing the same job in the same run: a throwaway Postfix instance (its own
 * config_directory and queue under a temp dir, smtpd on a loopback port,
 * relayhost = an smtp-sink). Both answer 250 only after an fsync.
 *
 * Accept latency: a probe client sends the same messages on one connection
 * during each load and times final dot → 250. Peak RSS: the forwarder
 * process's VmHWM (Postfix's is spread over many processes and not shown).
 *
 * Needs Debian's postfix package (smtp-source, smtp-sink, postfix); running as
 * root (Postfix's master must start as root).
 * Side effects: temp dirs under $TMPDIR, processes it starts and stops by pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, summarize } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SESSIONS = 20;
const LOADS = [
  { label: '2 KB', bytes: 2 * 1024, messages: 3000 },
  { label: '100 KB', bytes: 100 * 1024, messages: 1000 },
];

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} not listening after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function smtpSink(port: number): ChildProcess {
  const asRoot = process.getuid?.() === 0;
  return spawn('smtp-sink', [...(asRoot ? ['-u', 'postfix'] : []), '-c', `127.0.0.1:${port}`, '1000'], { stdio: 'ignore' });
}

/** One connection, messages one after another: final dot → 250 latencies. */
async function latencyProbe(port: number, bytes: number, stop: () => boolean): Promise<number[]> {
  const sock = net.connect(port, '127.0.0.1');
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
}

async function load(port: number, bytes: number, messages: number): Promise<Result> {
  let done = false;
  const probe = latencyProbe(port, bytes, () => done);
  const t0 = performance.now();
  // Asynchronous: the probe runs in this process during the load.
  const src = spawn('smtp-source', ['-s', String(SESSIONS), '-l', String(bytes), '-m', String(messages), '-f', 'app@example.org', '-t', 'to@example.com', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  src.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => src.on('exit', r));
  const secs = (performance.now() - t0) / 1000;
  done = true;
  if (code !== 0) throw new Error(`smtp-source failed: ${stderr}`);
  const l = summarize(await probe);
  return { rate: messages / secs, p50: l.p50, p99: l.p99 };
}

function postfixInstance(dir: string, port: number, sinkPort: number): { start(): void; stop(): void } {
  const etc = path.join(dir, 'etc');
  const data = path.join(dir, 'data');
  fs.mkdirSync(etc, { recursive: true });
  fs.mkdirSync(path.join(dir, 'queue'), { recursive: true });
  fs.mkdirSync(data, { recursive: true });
  fs.chmodSync(dir, 0o755);
  spawnSync('chown', ['postfix', data]);
  fs.writeFileSync(
    path.join(etc, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${path.join(dir, 'queue')}`,
      `data_directory = ${data}`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'myhostname = bench.localhost',
      'mydestination =',
      'inet_interfaces = loopback-only',
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      `relayhost = [127.0.0.1]:${sinkPort}`,
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'smtp_tls_security_level = none',
      'alias_maps =',
      'alias_database =',
      'local_recipient_maps =',
      `maillog_file_prefixes = ${os.tmpdir()}`,
      `maillog_file = ${path.join(dir, 'maillog')}`,
      'smtpd_client_connection_count_limit = 0',
      'default_process_limit = 100',
      '',
    ].join('\n'),
  );
  const services = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  fs.writeFileSync(path.join(etc, 'master.cf'), services.join('\n') + '\n');
  return {
    start() {
      const r = spawnSync('postfix', ['-c', etc, 'start'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`postfix start failed (see ${path.join(dir, 'maillog')}): ${r.stderr}`);
    },
    stop() {
      spawnSync('postfix', ['-c', etc, 'stop']);
    },
  };
}

function peakRssMiB(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(s)?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

async function startForwarder(dir: string, port: number, adminPort: number, sinkPort: number): Promise<ChildProcess> {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = path.join(dir, 'forwarder.json');
  fs.writeFileSync(cfg, JSON.stringify({ log: { level: 'warn' }, forwarder: { smtp: { port }, admin: { port: adminPort }, relay: { urls: [`smtp://127.0.0.1:${sinkPort}`], requireTls: false } } }));
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'postino.js'), 'forwarder', '--config', cfg], { env: { ...process.env, POSTINO_DATA: dir }, stdio: 'ignore' });
  await waitForPort(port);
  return child;
}

function line(who: string, r: Result): string {
  return `    ${who.padEnd(10)} ${fmt(r.rate, 0).padStart(6)} msgs/s accepted   accept latency p50 ${fmt(r.p50, 2)} ms  p99 ${fmt(r.p99, 2)} ms`;
}

export async function benchForwarder(): Promise<void> {
  for (const bin of ['smtp-source', 'smtp-sink', 'postfix']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) {
      console.log(`  skipped: ${bin} not found (apt-get install postfix; .ci/run does)`);
      return;
    }
  }
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-fwd-'));
  fs.chmodSync(base, 0o755); // Postfix's daemons run as user postfix and must reach their queue
  const [pfPort, pfSinkPort, fwdPort, fwdAdmin, fwdSinkPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const sinks = [smtpSink(pfSinkPort), smtpSink(fwdSinkPort)];
  const pf = postfixInstance(path.join(base, 'postfix'), pfPort, pfSinkPort);
  let postfixOk = true;
  let fwd: ChildProcess | undefined;
  try {
    try {
      pf.start();
      await waitForPort(pfPort);
    } catch (e) {
      postfixOk = false;
      console.log(`  Postfix comparison instance did not start, forwarder measured alone: ${(e as Error).message}`);
    }
    fwd = await startForwarder(path.join(base, 'forwarder'), fwdPort, fwdAdmin, fwdSinkPort);
    console.log(`smtp-source, ${SESSIONS} sessions, one message per connection, both relaying to smtp-sink:`);
    for (const l of LOADS) {
      console.log(`  ${l.label} × ${l.messages}:`);
      const p = postfixOk ? await load(pfPort, l.bytes, l.messages) : undefined;
      if (p) console.log(line('postfix', p));
      const f = await load(fwdPort, l.bytes, l.messages);
      console.log(line('forwarder', f));
      if (p) console.log(`    ratio forwarder/postfix: ${fmt(f.rate / p.rate, 2)}`);
    }
    console.log(`  forwarder peak RSS: ${peakRssMiB(fwd.pid!)} MiB`);
    if (!postfixOk) console.log('  (no Postfix figures: see above)');
  } finally {
    if (fwd && fwd.exitCode === null) {
      const f = fwd;
      f.kill('SIGTERM');
      await new Promise((r) => f.once('exit', r));
    }
    pf.stop();
    for (const s of sinks) s.kill('SIGTERM');
    fs.rmSync(base, { recursive: true, force: true });
  }
}
