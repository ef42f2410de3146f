/*
 * A PostgreSQL cluster of the test's own: `initdb` in a temporary folder, the
 * server on a free loopback port with its unix socket in that folder, stopped
 * by its pid at the end. Debian's packaged cluster (pg_ctlcluster, port 5432)
 * is never used or touched.
 *
 * Debian's PostgreSQL refuses to run as root: run as root (CI, this machine),
 * initdb and pg_ctl run as the `postgres` user (`runuser -u postgres --`) in
 * a folder chowned to it; run as anyone else, they run as that user.
 *
 * Missing PostgreSQL: the test is skipped visibly (peers.ts), unless
 * POSTINO_REQUIRE_PEERS=1 (CI), where it fails.
 */
import { spawnSync } from 'node:child_process';
import { after, before } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../common/storage/postgres/migrations.js';
import { openPool, type PgPool } from '../../common/storage/postgres/pool.js';
import { requirePeer } from './peers.js';
import { freePorts } from './ports.js';

/** Debian installs each major version under its own folder; the newest wins. */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (fs.existsSync(path.join(root, v, 'bin', 'initdb'))) return path.join(root, v, 'bin');
  return path.join(root, '15', 'bin');
}

const BIN = binDir();
/** pg_ctl start/stop wait at most this long (a loaded 2-core machine). */
const PG_CTL_TIMEOUT_S = 60;

/** undefined when PostgreSQL is installed, else the skip reason (throws under POSTINO_REQUIRE_PEERS=1). */
export function postgresMissing(): string | undefined {
  return requirePeer('postgresql', path.join(BIN, 'initdb'));
}

export interface PgCluster {
  port: number;
  /** The server's pid while it runs (from postmaster.pid). */
  pid: number | undefined;
  /** postgresql://postgres@127.0.0.1:<port>/postgres */
  url: string;
  /** A fresh, empty database in this cluster and its URL: one per test keeps tests apart. */
  newDatabase(name?: string): Promise<string>;
  /** Stops the server (fast: open sessions are cut) and waits for its pid to end; the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops the server and removes the folder. */
  close(): Promise<void>;
}

/**
 * Servers started here and still running, with their folders: a test the runner abandons
 * (a timeout, --test-force-exit) must leave neither a server nor its folder behind.
 */
const live = new Map<number, string>();
process.on('exit', () => {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (const [pid, dir] of live) {
    try {
      process.kill(pid, 'SIGQUIT'); // immediate shutdown
    } catch {
      /* already gone */
    }
    // An exit handler cannot await: wait (at most 5 s) for the server to go, then remove its folder.
    for (let i = 0; i < 250 && alive(pid); i++) Atomics.wait(pause, 0, 0, 20);
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* left for the OS's temp cleaning */
    }
  }
});

function asPostgres(cmd: string, args: string[]): { status: number | null; out: string } {
  const root = process.getuid?.() === 0;
  const r = root ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8' }) : spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let seq = 0;

/** Starts a cluster of its own (see the header). Call `postgresMissing()` first and skip when it gives a reason. */
export async function startPostgres(): Promise<PgCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-pg-'));
  if (process.getuid?.() === 0) {
    const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    fs.chownSync(dir, Number(id.stdout.trim()), Number(gid.stdout.trim()));
  }
  const data = path.join(dir, 'data');
  const init = asPostgres(path.join(BIN, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
  if (init.status !== 0) throw new Error(`initdb failed (${init.status}):\n${init.out}`);
  const [port] = await freePorts(1);
  const logFile = path.join(dir, 'server.log');
  const cluster: PgCluster = {
    port: port!,
    pid: undefined,
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    async newDatabase(name) {
      const db = name ?? `t${process.pid}_${++seq}`;
      const c = new pg.Client({ connectionString: cluster.url });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE "${db}"`);
      } finally {
        await c.end();
      }
      return `postgresql://postgres@127.0.0.1:${port}/${db}`;
    },
    async start() {
      const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=50`;
      const r = asPostgres(path.join(BIN, 'pg_ctl'), ['start', '-D', data, '-l', logFile, '-w', '-t', String(PG_CTL_TIMEOUT_S), '-o', opts]);
      if (r.status !== 0) throw new Error(`pg_ctl start failed (${r.status}):\n${r.out}\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-2000) : ''}`);
      cluster.pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      live.set(cluster.pid, dir);
    },
    async stop() {
      const pid = cluster.pid;
      if (pid === undefined) return;
      // pg_ctl stop -m fast signals the pid in postmaster.pid (SIGINT) and waits for it to end.
      asPostgres(path.join(BIN, 'pg_ctl'), ['stop', '-D', data, '-m', 'fast', '-w', '-t', String(PG_CTL_TIMEOUT_S)]);
      const until = Date.now() + PG_CTL_TIMEOUT_S * 1000;
      while (alive(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      if (alive(pid)) process.kill(pid, 'SIGKILL');
      live.delete(pid);
      cluster.pid = undefined;
    },
    async close() {
      await cluster.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.start();
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return cluster;
}

let suiteCluster: Promise<PgCluster> | undefined;

/**
 * Under POSTINO_TEST_STORAGE=postgres (`npm run test:postgres`), the `storage`
 * section the config helpers (upConfig, hostedConfig) give every hosted node:
 * a fresh database, migrated, in one cluster per test process, so the same
 * tests run on the PostgreSQL backend. Otherwise nothing: the node's LevelDB.
 */
export async function suiteStorage(): Promise<Record<string, unknown>> {
  if (process.env.POSTINO_TEST_STORAGE !== 'postgres') return {};
  const missing = postgresMissing();
  if (missing) throw new Error(`POSTINO_TEST_STORAGE=postgres: ${missing}`);
  suiteCluster ??= startPostgres(); // stopped at exit with the others started here (`live`)
  const url = await (await suiteCluster).newDatabase();
  const { openPool } = await import('../../common/storage/postgres/pool.js');
  const { migrate } = await import('../../common/storage/postgres/migrations.js');
  const pool = openPool({ url, poolSize: 1, connectTimeoutSeconds: 10, queryTimeoutSeconds: 30 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  return { storage: { postgres: { url } } };
}

/** A pool with short timeouts, so a test that stops the server sees a query fail quickly. */
export function shortPool(url: string, poolSize = 4): PgPool {
  return openPool({ url, poolSize, connectTimeoutSeconds: 2, queryTimeoutSeconds: 5 });
}

/** A fresh database of the cluster, migrated to this code's schema. */
export async function migratedDatabase(cluster: PgCluster): Promise<string> {
  const url = await cluster.newDatabase();
  const p = shortPool(url, 1);
  try {
    await migrate(p);
  } finally {
    await p.end();
  }
  return url;
}

/**
 * A cluster for one test file: started before its first test and closed after
 * its last (node:test hooks at the file's top level); `skip` is why not
 * (PostgreSQL missing) for the tests to pass on.
 */
export function clusterForFile(): { skip: string | undefined; cluster(): PgCluster } {
  const skip = postgresMissing();
  let c: PgCluster | undefined;
  before(async () => {
    if (!skip) c = await startPostgres();
  });
  after(async () => {
    await c?.close();
  });
  return {
    skip,
    cluster() {
      if (!c) throw new Error(`no PostgreSQL cluster: ${skip ?? 'not started yet'}`);
      return c;
    },
  };
}
