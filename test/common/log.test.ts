import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
