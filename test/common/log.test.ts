import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { isoTimeStamp } from '../../common/log.js';

const LOG_TS = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'common', 'log.ts')).href;

// A real process with its stdout on a file, as the forwarder's is under `postino up`: what
// the file holds at each step is what a SIGKILL at that step would leave.
function runChild(script: string): { status: number | null; lines: Array<Record<string, unknown>>; stderr: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-log-'));
  const out = path.join(dir, 'out.log');
  const fd = fs.openSync(out, 'w');
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `const OUT = ${JSON.stringify(out)}; const { createLogger, linesWritten } = await import(${JSON.stringify(LOG_TS)});\n${script}`], {
      stdio: ['ignore', fd, 'pipe'],
      encoding: 'utf8',
      timeout: 30_000,
    });
    const text = fs.readFileSync(out, 'utf8');
    return { status: r.status, stderr: r.stderr, lines: text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test("a turn's lines are written together, in order, and linesWritten() resolves once they are in the file", () => {
  const r = runChild(`
    import('node:fs').then(async ({ default: fs }) => {
      const log = createLogger('forwarder', 'info');
      const other = createLogger('listener', 'info');
      log.info({ n: 1 }, 'one');
      other.info({ n: 2 }, 'two');
      log.info({ n: 3 }, 'three');
      const before = fs.readFileSync(OUT, 'utf8');
      await linesWritten();
      const after = fs.readFileSync(OUT, 'utf8');
      if (before !== '') throw new Error('written one by one: ' + before);
      if (after.trim().split('\\n').length !== 3) throw new Error('not all written: ' + after);
      log.info({ n: 4 }, 'next turn');
      await linesWritten();
    });
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.lines.map((l) => l.n), [1, 2, 3, 4]);
  assert.deepEqual(r.lines.map((l) => l.stage), ['forwarder', 'listener', 'forwarder', 'forwarder']);
});

test('a line logged just before process.exit is still written', () => {
  const r = runChild(`
    const log = createLogger('up', 'info');
    log.fatal({ event: 'config-invalid' }, 'bad config');
    process.exit(3);
  `);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.lines.length, 1);
  assert.equal(r.lines[0]!.event, 'config-invalid');
  assert.equal(r.lines[0]!.level, 'fatal');
});

test('a line logged before an uncaught exception is still written', () => {
  const r = runChild(`
    const log = createLogger('engine', 'info');
    log.error({ event: 'about-to-fail' }, 'failing');
    throw new Error('boom');
  `);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /boom/);
  assert.deepEqual(r.lines.map((l) => l.event), ['about-to-fail']);
});

test("each line's time is pino's isoTime of the millisecond it was logged in, formatted once a millisecond", (t) => {
  let now = Date.parse('2026-12-04T17:30:00.123Z');
  t.mock.method(Date, 'now', () => now);
  const first = isoTimeStamp();
  // The same fragment pino's own isoTime makes (what the lines carried before, what log readers parse).
  assert.equal(first, pino.stdTimeFunctions.isoTime());
  assert.equal(first, ',"time":"2026-12-04T17:30:00.123Z"');
  assert.equal(isoTimeStamp(), first, 'the same millisecond: the same string');
  now += 1;
  assert.equal(isoTimeStamp(), ',"time":"2026-12-04T17:30:00.124Z"', 'the next millisecond: a new one');
  now -= 5_000; // a clock stepped back is followed too
  assert.equal(isoTimeStamp(), pino.stdTimeFunctions.isoTime());
  assert.equal(isoTimeStamp(), ',"time":"2026-12-04T17:29:55.124Z"');
});

test('lines logged in a real process carry the time they were logged at', () => {
  const r = runChild(`
    const log = createLogger('forwarder', 'info');
    const before = Date.now();
    for (let i = 0; i < 50; i++) log.info({ n: i }, 'line');
    await linesWritten();
    await new Promise((r) => setTimeout(r, 5));
    log.info({ n: 50, before }, 'last');
    // Read after the last line was stamped (a clock read before it could fall in the millisecond before).
    const after = Date.now();
    await linesWritten();
    log.info({ n: 51, after }, 'after');
    await linesWritten();
  `);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 52);
  const last = r.lines[50]!;
  const after = Number(r.lines[51]!.after);
  const times = r.lines.slice(0, 51).map((l) => Date.parse(String(l.time)));
  for (const [i, ms] of times.entries()) assert.ok(ms >= Number(last.before) && ms <= after, `line ${i}: ${String(r.lines[i]!.time)} not between the first's logging and the last's`);
  // The last line, logged 5 ms later, has a later stamp than the burst before it: the cache moved on.
  assert.ok(times[50]! > times[0]!, `last line at ${String(last.time)}, the first at ${String(r.lines[0]!.time)}`);
});
