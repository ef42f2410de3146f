/*
 * npm run bench -- listener
 *
 * Messages/second the hosted listener accepts (each `250` after its synced
 * LevelDB write, strict DATA checks on, quotas and caps active) with 20
 * concurrent sessions, one message per connection, 2 KB bodies:
 *   - plain: Postfix's smtp-source (`-s 20`);
 *   - STARTTLS: smtp-source cannot do STARTTLS (its usage has no TLS option),
 *     so bench/smtp-tls-client.ts, a Node client in its own process, does the
 *     same sessions with STARTTLS (TLS 1.2+, certificate verified).
 * Beside it in the same run: Postfix's smtpd (a throwaway instance, its own
 * config_directory/queue under a temp dir, on a loopback port, delivering to
 * `discard`), driven by the same two clients. Ratio = listener / smtpd.
 * Latency (TLS runs): whole session connect → QUIT reply, p50/p99. Peak RSS:
 * this process, which holds the listener (the clients are other processes).
 *
 * Needs Debian's postfix (smtp-source, postfix) and root for Postfix's master.
 * Side effects: temp dirs; processes it starts and stops itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parseConfig } from '../common/config.js';
import { DurableQueue } from '../common/durable-queue.js';
import type { IntakeMeta } from '../common/intake-record.js';
import { ensureDevTls } from '../common/secrets.js';
import { Store } from '../common/store.js';
import { startListener } from '../listener/listener.js';
import { fmt, rssSampler } from './stats.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SESSIONS = 20;
const MESSAGES = 2000;
const BYTES = 2048;

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

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => resolve({ code, out, seconds: (performance.now() - t0) / 1000 }));
  });
}

interface Result {
  rate: number;
  p50?: number;
  p99?: number;
}

async function plain(port: number): Promise<Result> {
  const r = await run('smtp-source', ['-s', String(SESSIONS), '-l', String(BYTES), '-m', String(MESSAGES), '-f', 'app@example.org', '-t', 'to@example.com', `127.0.0.1:${port}`]);
  if (r.code !== 0) throw new Error(`smtp-source failed: ${r.out}`);
  return { rate: MESSAGES / r.seconds };
}

async function withTls(port: number, caFile: string): Promise<Result> {
  const r = await run(process.execPath, ['--import', 'tsx', path.join(HERE, 'smtp-tls-client.ts'), String(port), String(SESSIONS), String(MESSAGES), String(BYTES), caFile]);
  if (r.code !== 0) throw new Error(`TLS client failed: ${r.out}`);
  const j = JSON.parse(r.out.trim().split('\n').pop()!) as { seconds: number; ok: number; failed: number; p50: number; p99: number };
  if (j.failed > 0) throw new Error(`TLS client: ${j.failed} sessions failed`);
  return { rate: j.ok / j.seconds, p50: j.p50, p99: j.p99 };
}

function postfixInstance(dir: string, port: number, certFile: string, keyFile: string): { start(): void; stop(): void } {
  const etc = path.join(dir, 'etc');
  const data = path.join(dir, 'data');
  for (const d of [etc, data, path.join(dir, 'queue')]) fs.mkdirSync(d, { recursive: true });
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
      'default_transport = discard',
      'relay_transport = discard',
      'smtpd_relay_restrictions = permit_mynetworks, reject',
      'alias_maps =',
      'alias_database =',
      'local_recipient_maps =',
      `smtpd_tls_cert_file = ${certFile}`,
      `smtpd_tls_key_file = ${keyFile}`,
      'smtpd_tls_security_level = may',
      'smtpd_tls_mandatory_protocols = >=TLSv1.2',
      `maillog_file_prefixes = ${os.tmpdir()}`,
      `maillog_file = ${path.join(dir, 'maillog')}`,
      'smtpd_client_connection_count_limit = 0',
      'smtpd_client_connection_rate_limit = 0',
      'default_process_limit = 100',
      '',
    ].join('\n'),
  );
  const services = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'tlsmgr unix - - n 1000? 1 tlsmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
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
      if (r.status !== 0) throw new Error(`postfix start failed: ${r.stderr}${r.stdout}\n${fs.existsSync(path.join(dir, 'maillog')) ? fs.readFileSync(path.join(dir, 'maillog'), 'utf8') : ''}`);
    },
    stop() {
      spawnSync('postfix', ['-c', etc, 'stop']);
    },
  };
}

export async function benchListener(): Promise<void> {
  if (!fs.existsSync('/usr/sbin/smtp-source') || !fs.existsSync('/usr/sbin/postfix')) {
    console.log('SKIP: needs Debian postfix (smtp-source, postfix)');
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-listener-'));
  fs.chmodSync(dir, 0o755); // Postfix's processes (user postfix) must reach their folders
  const tlsPaths = await ensureDevTls(path.join(dir, 'tls'));
  fs.chmodSync(path.join(dir, 'tls'), 0o755);
  const rows: Array<[string, Result, Result]> = [];

  // The listener, in this process, as `postino hosted` runs it (minus the engine draining the queue).
  const cfg = parseConfig({
    // Per-IP cap above the 20 sessions: a client reconnecting after QUIT can race the old socket's close.
    listener: { port: await freePort(), maxConnectionsPerIp: 100, tls: { certFile: tlsPaths.certFile, keyFile: tlsPaths.keyFile } },
    accounts: [
      { id: 'plain', networks: ['127.0.0.1/32'], listener: { requireTls: false } },
    ],
  });
  const store = await Store.open(path.join(dir, 'hosted'));
  const queue = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const listener = await startListener(cfg.listener, cfg.accounts, dir, queue, pino({ level: 'silent' }));
  const rss = rssSampler();
  const lPlain = await plain(listener.port);
  const lTls = await withTls(listener.port, tlsPaths.caFile);
  const peak = rss.stop();
  const queued = queue.size;
  await listener.close();
  await store.close();

  const pfPort = await freePort();
  const pf = postfixInstance(path.join(dir, 'postfix'), pfPort, tlsPaths.certFile, tlsPaths.keyFile);
  pf.start();
  try {
    await waitForPort(pfPort);
    const pPlain = await plain(pfPort);
    const pTls = await withTls(pfPort, tlsPaths.caFile);
    rows.push(['plain (smtp-source)', lPlain, pPlain], ['STARTTLS (node client)', lTls, pTls]);
  } finally {
    pf.stop();
  }

  console.log(`${SESSIONS} sessions, ${MESSAGES} messages of ${BYTES} bytes each run, one message per connection; listener queued ${queued}`);
  for (const [label, l, p] of rows) {
    const lat = (r: Result): string => (r.p50 !== undefined ? `  session p50 ${fmt(r.p50, 1)} ms p99 ${fmt(r.p99!, 1)} ms` : '');
    console.log(`  ${label.padEnd(24)} listener ${fmt(l.rate, 0).padStart(6)} msg/s${lat(l)}`);
    console.log(`  ${''.padEnd(24)} postfix  ${fmt(p.rate, 0).padStart(6)} msg/s${lat(p)}`);
    console.log(`  ${''.padEnd(24)} ratio listener/postfix ${fmt(l.rate / p.rate, 2)}`);
  }
  console.log(`  listener peak RSS ${fmt(peak)} MiB`);
  fs.rmSync(dir, { recursive: true, force: true });
}

