/*
 * One process-wide crash policy (app/supervisor.ts installCrashPolicy): an
 * unhandled rejection or uncaught exception is one `fatal` log line and exit
 * status 70, so systemd or `up` sees a crash instead of a process going on in
 * an unknown state.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { ROOT } from '../helpers/postino.js';

function run(body: string): { status: number | null; lines: Array<Record<string, unknown>> } {
  const script = `import { installCrashPolicy } from './dist/app/supervisor.js'; import { createLogger } from './dist/common/log.js'; installCrashPolicy(createLogger('test', 'info')); ${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: r.status, lines };
}

test('an unhandled rejection is logged as fatal and exits 70', () => {
  const r = run(`Promise.reject(new Error('boom')); setTimeout(() => {}, 5000);`);
  assert.equal(r.status, 70);
  const line = r.lines.find((l) => l.event === 'crashed');
  assert.equal(line?.level, 'fatal');
  assert.equal(line?.kind, 'unhandled rejection');
  assert.match(JSON.stringify(line?.err), /boom/);
});

test('an uncaught exception too', () => {
  const r = run(`setTimeout(() => { throw new Error('bang'); }, 10); setTimeout(() => {}, 5000);`);
  assert.equal(r.status, 70);
  assert.equal(r.lines.find((l) => l.event === 'crashed')?.kind, 'uncaught exception');
});
