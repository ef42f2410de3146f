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
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parseConfig } from '../common/config.js';
import { DurableQueue } from '../common/durable-queue.js';
import type { IntakeMeta } from '../common/intake-record.js';
import { ensureDevTls } from '../common/secrets.js';
import { Store } from '../common/store.js';
import { startListener } from '../listener/listener.js';
import { freePorts } from '../test/helpers/ports.js';
import { startPostfix } from '../test/helpers/postfix.js';
import { postfixBenchDir } from './postfix-peer.js';
import { fmt, rssSampler } from './stats.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SESSIONS = 20;
const MESSAGES = 2000;
const BYTES = 2048;

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

export async function benchListener(): Promise<void> {
  const dir = postfixBenchDir('listener');
  if (!dir) return;
  const tlsPaths = await ensureDevTls(path.join(dir, 'tls'));
  fs.chmodSync(path.join(dir, 'tls'), 0o755);
  const rows: Array<[string, Result, Result]> = [];

  // The listener, in this process, as `postino hosted` runs it (minus the engine draining the queue).
  const cfg = parseConfig({
    // Per-IP cap above the 20 sessions: a client reconnecting after QUIT can race the old socket's close.
    listener: { port: (await freePorts(1))[0], maxConnectionsPerIp: 100, tls: { certFile: tlsPaths.certFile, keyFile: tlsPaths.keyFile } },
    accounts: [
      { id: 'plain', networks: ['127.0.0.1/32'], listener: { requireTls: false } },
    ],
  });
  const store = await Store.open(path.join(dir, 'hosted'));
  const queue = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const listener = await startListener({ config: cfg.listener, accounts: cfg.accounts, dataDir: dir, queue, log: pino({ level: 'silent' }) });
  const rss = rssSampler();
  const lPlain = await plain(listener.port);
  const lTls = await withTls(listener.port, tlsPaths.caFile);
  const peak = rss.stop();
  const queued = queue.size;
  await listener.close();
  await store.close();

  const [pfPort] = (await freePorts(1)) as [number];
  // smtpd with STARTTLS offered, every message discarded after it is queued (fsynced), as ours is kept.
  const pf = await startPostfix({
    port: pfPort,
    main: {
      smtpd_tls_cert_file: tlsPaths.certFile,
      smtpd_tls_key_file: tlsPaths.keyFile,
      smtpd_tls_security_level: 'may',
      smtpd_tls_mandatory_protocols: '>=TLSv1.2',
      smtpd_client_connection_count_limit: '0',
      smtpd_client_connection_rate_limit: '0',
    },
  });
  try {
    const pPlain = await plain(pfPort);
    const pTls = await withTls(pfPort, tlsPaths.caFile);
    rows.push(['plain (smtp-source)', lPlain, pPlain], ['STARTTLS (node client)', lTls, pTls]);
  } finally {
    await pf.stop();
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

