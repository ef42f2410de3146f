/*
 * npm run bench -- scale — what sharing state costs (issue #14): end-to-end
 * messages/s through a forwarder into
 *   1. one hosted node on LevelDB (the single-node default),
 *   2. one hosted node on PostgreSQL (storage.postgres: suppressions, quotas,
 *      spool ids, the global event feed, heartbeats),
 *   3. two hosted nodes on PostgreSQL behind HAProxy (PROXY v2),
 * delivering to Postfix's smtp-sink; Postfix's smtp-source as the load (20
 * sessions, 2 KB, one message per connection), alternating setups, medians.
 * Also PostgreSQL's work per message (commits and rows written, from
 * pg_stat_database) and CPU seconds per 1,000 messages of the whole machine.
 * On this 2-core machine two nodes cannot be faster than one: the figure shows
 * the cost of sharing, not the gain of a second machine.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { ensureDevTls, secretsDir } from '../common/secrets.js';
import { haproxyMissing, startHaproxy, type Haproxy } from '../test/helpers/haproxy.js';
import { freePorts } from '../test/helpers/ports.js';
import { postgresMissing, startPostgres, type PgCluster } from '../test/helpers/postgres.js';
import { CLI, tempDir } from '../test/helpers/postino.js';
import { machineCpuSeconds, smtpSource, startLoggingToFile, startSmtpSink, type SourceLoad } from './pipeline-parts.js';
import { postfixReady } from './postfix-peer.js';

type Setup = 'one node, LevelDB' | 'one node, PostgreSQL' | 'two nodes, PostgreSQL, HAProxy';
const SETUPS: Setup[] = ['one node, LevelDB', 'one node, PostgreSQL', 'two nodes, PostgreSQL, HAProxy'];
const RUNS = Number(process.env.POSTINO_BENCH_RUNS) || 3;
const LOAD: SourceLoad = { sessions: 20, size: 2048, messages: 3_000, reuse: false };

interface Result {
  intake: number;
  e2e: number;
  machineCpu: number;
  /** PostgreSQL commits and rows written (inserted + updated) per message. */
  pgCommits?: number;
  pgRows?: number;
  /** Bytes of the events table (rows and indexes) per message, and events per message. */
  eventBytes?: number;
  events?: number;
}

async function pgCounters(url: string): Promise<{ commits: number; rows: number; eventBytes: number; events: number }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ xact_commit: string; tup_inserted: string; tup_updated: string }>('SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database WHERE datname = current_database()');
    const row = r.rows[0]!;
    // The events table is partitioned: its size is its partitions' (rows, TOAST and indexes).
    const size = await c.query<{ bytes: string | null; n: string }>(
      `SELECT (SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i WHERE i.inhparent = 'events'::regclass) AS bytes, (SELECT count(*) FROM events) AS n`,
    );
    return { commits: Number(row.xact_commit), rows: Number(row.tup_inserted) + Number(row.tup_updated), eventBytes: Number(size.rows[0]?.bytes ?? 0), events: Number(size.rows[0]?.n ?? 0) };
  } finally {
    await c.end();
  }
}

async function runSetup(setup: Setup, cluster: PgCluster | undefined): Promise<Result> {
  const root = tempDir('bench-scale');
  const sink = await startSmtpSink();
  const nodes = setup.startsWith('two') ? 2 : 1;
  const ports = await freePorts(2 * nodes + 3);
  const [lbPort, fwdSmtp, fwdAdmin] = ports.slice(2 * nodes);
  const pgUrl = setup.includes('PostgreSQL') ? await cluster!.newDatabase() : undefined;
  const dirs = Array.from({ length: nodes }, (_, i) => path.join(root, `node${i}`));
  for (const d of dirs) fs.mkdirSync(d, { recursive: true });
  const tls = await ensureDevTls(secretsDir(dirs[0]!));
  for (const d of dirs.slice(1)) fs.cpSync(secretsDir(dirs[0]!), secretsDir(d), { recursive: true });
  const started: Array<{ stop(): Promise<void> }> = [];
  let lb: Haproxy | undefined;
  try {
    const nodeConfig = (i: number): Record<string, unknown> => ({
      log: { level: 'warn' },
      listener: { port: ports[2 * i], ...(nodes > 1 ? { proxyProtocolFrom: ['127.0.0.3/32'] } : {}) },
      http: { port: ports[2 * i + 1] },
      feedback: { port: null },
      delivery: { relays: [`smtp://127.0.0.1:${sink.port}`] },
      ...(pgUrl ? { storage: { postgres: { url: pgUrl } } } : {}),
    });
    if (pgUrl) {
      fs.writeFileSync(path.join(root, 'migrate.json'), JSON.stringify(nodeConfig(0)));
      const m = spawnSync(process.execPath, [CLI, 'db', 'migrate', '--config', path.join(root, 'migrate.json')], { encoding: 'utf8' });
      if (m.status !== 0) throw new Error(`postino db migrate: ${m.stderr}`);
    }
    for (let i = 0; i < nodes; i++) started.push(await startLoggingToFile('hosted', dirs[i]!, nodeConfig(i), [ports[2 * i]!, ports[2 * i + 1]!]));
    let relayPort = ports[0]!;
    if (nodes > 1) {
      lb = await startHaproxy(path.join(root, 'haproxy'), [{ name: 'smtp', port: lbPort!, sendProxy: true, source: '127.0.0.3', servers: dirs.map((_, i) => ({ name: `n${i}`, port: ports[2 * i]! })) }]);
      relayPort = lbPort!;
    }
    const fwdDir = path.join(root, 'forwarder');
    fs.mkdirSync(fwdDir, { recursive: true });
    started.push(
      await startLoggingToFile(
        'forwarder',
        fwdDir,
        { log: { level: 'warn' }, forwarder: { smtp: { port: fwdSmtp }, admin: { port: fwdAdmin }, relay: { urls: [`smtp://127.0.0.1:${relayPort}`], requireTls: true, caFile: tls.caFile, serverName: 'localhost' } } },
        [fwdSmtp!, fwdAdmin!],
      ),
    );
    const pg0 = pgUrl ? await pgCounters(pgUrl) : undefined;
    const m0 = machineCpuSeconds();
    const t0 = Date.now();
    await smtpSource(fwdSmtp!, LOAD);
    const intakeSeconds = (Date.now() - t0) / 1000;
    const until = Date.now() + 300_000;
    while (sink.received() < LOAD.messages && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    if (sink.received() < LOAD.messages) throw new Error(`${setup}: ${sink.received()} of ${LOAD.messages} in the sink after 5 minutes`);
    const seconds = (Date.now() - t0) / 1000;
    const per1000 = 1000 / LOAD.messages;
    const r: Result = { intake: LOAD.messages / intakeSeconds, e2e: LOAD.messages / seconds, machineCpu: (machineCpuSeconds() - m0) * per1000 };
    if (pgUrl && pg0) {
      await new Promise((res) => setTimeout(res, 3_000)); // the event feed's last batches
      const pg1 = await pgCounters(pgUrl);
      r.pgCommits = (pg1.commits - pg0.commits) / LOAD.messages;
      r.pgRows = (pg1.rows - pg0.rows) / LOAD.messages;
      r.eventBytes = (pg1.eventBytes - pg0.eventBytes) / LOAD.messages;
      r.events = (pg1.events - pg0.events) / LOAD.messages;
    }
    return r;
  } finally {
    for (const s of started.reverse()) await s.stop();
    await lb?.stop();
    sink.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

export async function benchScale(): Promise<void> {
  const missing = haproxyMissing() ?? postgresMissing();
  if (missing || !postfixReady()) {
    console.log(`scale: skipped (${missing ?? 'Postfix smtp-source/smtp-sink missing'})`);
    return;
  }
  const cluster = await startPostgres();
  try {
    const results = new Map<Setup, Result[]>(SETUPS.map((s) => [s, []]));
    for (let run = 0; run < RUNS; run++) for (const s of SETUPS) results.get(s)!.push(await runSetup(s, cluster));
    console.log(`${LOAD.messages} messages of ${LOAD.size / 1024} KB, ${LOAD.sessions} sessions, one message per connection; medians of ${RUNS} alternating runs`);
    console.log(`${'setup'.padEnd(34)} ${'intake/s'.padStart(9)} ${'e2e/s'.padStart(7)} ${'CPU s/1000'.padStart(11)} ${'PG commits/msg'.padStart(15)} ${'PG rows/msg'.padStart(12)} ${'events/msg'.padStart(11)} ${'event bytes/msg'.padStart(16)}`);
    for (const s of SETUPS) {
      const rs = results.get(s)!;
      const m = (f: (r: Result) => number | undefined): string => {
        const v = median(rs.map(f).filter((x): x is number => x !== undefined));
        return Number.isNaN(v) ? '-' : v.toFixed(v < 10 ? 2 : 0);
      };
      console.log(`${s.padEnd(34)} ${m((r) => r.intake).padStart(9)} ${m((r) => r.e2e).padStart(7)} ${m((r) => r.machineCpu).padStart(11)} ${m((r) => r.pgCommits).padStart(15)} ${m((r) => r.pgRows).padStart(12)} ${m((r) => r.events).padStart(11)} ${m((r) => r.eventBytes).padStart(16)}`);
    }
  } finally {
    await cluster.close();
  }
}
