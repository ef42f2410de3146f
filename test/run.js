#!/usr/bin/env node
// Runs every test file through tsx with node's test runner (Node 20 needs the
// file list: `--test` alone finds no .ts files). TAP output; a leaked socket
// must not hang CI, hence --test-force-exit.
//
// Two passes. Files that assert on time under load (recovery within N seconds,
// rate caps, crash and pause timings, linear growth of content scans, a burst that must
// saturate the forwarder's event loop, not the machine) run one at a time, with the machine
// to themselves; every other file runs three at a time: most of the suite waits on
// sockets, timers and fsync rather than the CPU, so three overlap well on the
// 2-core CI machine (the longest, the 100 s shaping trickle, is almost all waiting).
// The second pass starts its longest files first (LONGEST_FIRST), so the pool does not
// end waiting on one long file that happened to start last; a stale entry only costs order.
// Long files that mostly wait with tolerant bounds (the 30 s outage of
// effectively-once, the probe schedule of outage-probes) belong in this pass, not the timed one.
// Three long files of that pass are almost all waiting (WAITING: a 100 s trickle at 2 msg/s, a
// 55 s probe schedule, a 30 s outage): they run one after another in a side lane next to the pool
// instead of taking three of its slots at the start, so four files run at once with one of them
// idle; the side lane's TAP is printed when it ends, not interleaved.
// POSTINO_TEST_CONCURRENCY=1 runs the second pass one by one too (the side lane after it).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** Files whose assertions are timings that a second test file on the same 2 cores would skew. */
const TIMED = /(recovery|rate-cap|crash|durability|relay-pause|graceful-stop|hostile-content|shaping-priority|intake-first-burst)\.test\.ts$/;
/** Second-pass files that spend almost all their time waiting on timers with tolerant bounds (see the header). */
const WAITING = ['test/engine/delivery/shaping.test.ts', 'test/forwarder/outage-probes.test.ts', 'test/forwarder/effectively-once.test.ts'];
/** Second-pass files measured at 25 s or more, longest first. */
const LONGEST_FIRST = [
  'test/e2e/multi-node.test.ts',
  'test/engine/events/exporter.test.ts',
  'test/e2e/reputation-brake.test.ts',
  'test/e2e/accounts-live.test.ts',
  'test/e2e/rewrap.test.ts',
  'test/e2e/events-exporter.test.ts',
  'test/e2e/delivery-postfix.test.ts',
  'test/e2e/dashboard.test.ts',
  'test/e2e/recipients.test.ts',
  'test/engine/suppression-backends.test.ts',
  'test/engine/shared-pauses-sessions.test.ts',
  'test/e2e/dashboard-archive.test.ts',
];
const CONCURRENCY = Number(process.env.POSTINO_TEST_CONCURRENCY) || 3;

function find(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const testArgs = (files, concurrency) => ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-force-exit', `--test-concurrency=${concurrency}`, '--test-timeout=300000', ...files];

function run(files, concurrency) {
  if (files.length === 0) return 0;
  const r = spawnSync(process.execPath, testArgs(files, concurrency), { stdio: 'inherit' });
  return r.status ?? 1;
}

/** Runs files one by one in the background; resolves with the exit status once its buffered TAP is printed. */
function sideLane(files) {
  if (files.length === 0) return { done: Promise.resolve(0) };
  const child = spawn(process.execPath, testArgs(files, 1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const out = [];
  child.stdout.on('data', (b) => out.push(b));
  const done = new Promise((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  return { done: done.then((code) => (process.stdout.write(Buffer.concat(out)), code)) };
}

const only = process.argv.slice(2);
// Files that start a PostgreSQL cluster of their own (the shared-state backends, the global feed,
// the multi-node layout) run in `npm run test:postgres`, not in `npm test`: they are the scale-out
// suite, several minutes on 2 cores. That command (POSTINO_TEST_STORAGE=postgres) also runs every
// file that starts a hosted node again with every hosted node on PostgreSQL (test/helpers/postgres.ts
// suiteStorage); the unit tests have no hosted config, and each shared store has its own
// both-backends suite. .ci/run runs both commands.
const needsPostgres = (f) => /\b(clusterForFile|startPostgres)\(/.test(readFileSync(f, 'utf8'));
/** Files that start a whole hosted node through the helpers that take suiteStorage(): e2e and the forwarder's outage tests. */
const startsNode = (f) => f.startsWith(path.join('test', 'e2e') + path.sep) || /\b(hostedConfig|upConfig|startPostino)\(/.test(readFileSync(f, 'utf8'));
/**
 * Not again on PostgreSQL: the forwarder's recovery and probe timings, whose bounds are the forwarder's
 * own (probe schedule, rate cap) with the hosted node only as the peer it waits for; the hosted
 * side's speed on each backend is `npm run bench -- scale`.
 */
const FORWARDER_TIMINGS = /forwarder[\\/](recovery|outage-probes)\.test\.ts$/;
const postgresPass = process.env.POSTINO_TEST_STORAGE === 'postgres';
const all = find('test').filter((f) => (postgresPass ? needsPostgres(f) || (startsNode(f) && !FORWARDER_TIMINGS.test(f)) : !needsPostgres(f)));
const files = only.length ? only : all.sort();
const timed = files.filter((f) => TIMED.test(f));
const rank = (f) => (LONGEST_FIRST.indexOf(f) + LONGEST_FIRST.length + 1) % (LONGEST_FIRST.length + 1);
const rest = files.filter((f) => !TIMED.test(f)).sort((x, y) => rank(x) - rank(y));
const lane = CONCURRENCY > 1 ? rest.filter((f) => WAITING.includes(f)) : [];
const a = run(timed, 1);
const side = sideLane(lane);
const b = run(rest.filter((f) => !lane.includes(f)), CONCURRENCY);
const c = await side.done;
process.exit(a || b || c);
