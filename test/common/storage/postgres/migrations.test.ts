import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { migrate, MIGRATIONS, SCHEMA_VERSION } from '../../../../common/storage/postgres/migrations.js';
import { CLI, tempDir } from '../../../helpers/postino.js';
import { clusterForFile } from '../../../helpers/postgres.js';

const pgFile = clusterForFile();
const skip = pgFile.skip;

/** `postino db migrate` (the built CLI) with this config: exit status and everything it printed. */
async function dbMigrate(config: Record<string, unknown>): Promise<{ status: number | null; out: string }> {
  const dir = tempDir('migrate');
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, [CLI, 'db', 'migrate', '--config', file], { env: { ...process.env, POSTINO_DATA: dir }, timeout: 60_000 });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  fs.rmSync(dir, { recursive: true, force: true });
  return { status, out };
}

test('postino db migrate applies every migration once; a second run applies nothing', { skip }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const first = await dbMigrate({ storage: { postgres: { url } } });
  assert.equal(first.status, 0, first.out);
  assert.match(first.out, new RegExp(`applied 1 \\(suppressions\\), 2 \\(events partitioned by day\\), 3 \\(quota counters\\), 4 \\(spool ids\\), 5 \\(global event feed and node heartbeats\\), 6 \\(delivery pauses and dashboard sessions\\), 7 \\(recipient database\\), 8 \\(statistics counters\\), 9 \\(reputation brake records\\), 10 \\(shared webhook outbox\\), 11 \\(account overlays and webhook endpoints\\); schema at version ${SCHEMA_VERSION}`));
  const second = await dbMigrate({ storage: { postgres: { url } } });
  assert.equal(second.status, 0, second.out);
  assert.match(second.out, new RegExp(`schema at version ${SCHEMA_VERSION}, nothing to apply`));
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const rows = (await c.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
    assert.deepEqual(rows, MIGRATIONS.map((m) => m.version));
  } finally {
    await c.end();
  }
});

test('two nodes migrating at once: the advisory lock serialises them, each migration applied once', { skip }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const pools = [new pg.Pool({ connectionString: url }), new pg.Pool({ connectionString: url })];
  try {
    const [a, b] = await Promise.all(pools.map((p) => migrate(p)));
    assert.deepEqual([a!.applied.length + b!.applied.length, a!.version, b!.version], [MIGRATIONS.length, SCHEMA_VERSION, SCHEMA_VERSION]);
    assert.ok(a!.applied.length === 0 || b!.applied.length === 0, 'one of them found everything applied');
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
});

test('a failing migration leaves nothing behind (one transaction) and says which one failed', { skip }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const pool = new pg.Pool({ connectionString: url });
  try {
    const broken = [...MIGRATIONS, { version: 99, name: 'broken', sql: 'CREATE TABLE x (); SELECT no_such_function()' }];
    await assert.rejects(migrate(pool, broken), /migration 99 \(broken\) failed: function no_such_function\(\) does not exist/);
    const left = await pool.query(`SELECT to_regclass('suppressions') AS s, to_regclass('schema_migrations') AS m`);
    assert.deepEqual(left.rows[0], { s: null, m: null });
  } finally {
    await pool.end();
  }
});

test('events: one partition per UTC day; retention drops whole partitions; a day without one refuses rows', { skip }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const pool = new pg.Pool({ connectionString: url });
  try {
    await migrate(pool);
    await pool.query(`SELECT postino_event_partitions(date '2026-01-01', 3)`);
    const ins = (at: string, seq: number): Promise<unknown> => pool.query(`INSERT INTO events (at, seq, account, type, body, node, node_seq) VALUES ($1, $2, 'acme', 'delivered', '{}', 'n1', $2)`, [at, seq]);
    await ins('2026-01-01T00:00:00Z', 1);
    await ins('2026-01-02T23:59:59.999Z', 2);
    await ins('2026-01-03T12:00:00Z', 3);
    await assert.rejects(ins('2025-12-31T23:59:59Z', 4), /no partition of relation "events" found/);
    const perDay = await pool.query<{ p: string; n: string }>(`SELECT tableoid::regclass::text AS p, count(*) AS n FROM events GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(perDay.rows, [{ p: 'events_20260101', n: '1' }, { p: 'events_20260102', n: '1' }, { p: 'events_20260103', n: '1' }]);
    assert.equal((await pool.query(`SELECT postino_drop_event_partitions(date '2026-01-03') AS n`)).rows[0].n, 2);
    assert.deepEqual((await pool.query(`SELECT seq FROM events ORDER BY seq`)).rows, [{ seq: '3' }]);
    assert.equal((await pool.query(`SELECT postino_event_partitions(date '2026-01-03', 1) AS n`)).rows[0].n, 0, 'creating an existing day again is a no-op');
  } finally {
    await pool.end();
  }
});

test('db migrate without storage.postgres exits 2; an unreachable database exits 1 without printing the password', async () => {
  const [none, bad, wrong] = await Promise.all([
    dbMigrate({}),
    dbMigrate({ storage: { postgres: { url: 'postgresql://postino:s3cret-pw@127.0.0.1:1/postino', connectTimeoutSeconds: 2 } } }),
    dbMigrate({ storage: { postgres: { url: 'mysql://x@h/db' } } }),
  ]);
  assert.equal(none.status, 2, none.out);
  assert.match(none.out, /no storage\.postgres/);
  assert.equal(bad.status, 1, bad.out);
  assert.match(bad.out, /ECONNREFUSED/);
  assert.doesNotMatch(bad.out, /s3cret-pw/);
  assert.equal(wrong.status, 2, wrong.out);
  assert.match(wrong.out, /storage\.postgres\.url: the scheme is postgresql:\/\//);
});
