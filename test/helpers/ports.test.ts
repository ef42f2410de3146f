/*
 * test/helpers/ports.ts hands out ports to test files that the runner runs at once, each in its
 * own process (CI run P failed on two of them picking the same port). Real processes here: several
 * pick ports at the same moment and none may get a port another got; once a process has exited,
 * its ports can be handed out again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { reservePort } from './ports.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PORTS = path.join(ROOT, 'test/helpers/ports.ts');

/** A child that takes `n` ports, prints them, and stays alive until `holdMs` passed; `printed` gets them at once. */
function picker(n: number, holdMs: number, printed?: (ports: number[]) => void): Promise<number[]> {
  const code = `import { freePorts } from ${JSON.stringify(PORTS)}; const p = await freePorts(${n}); console.log(JSON.stringify(p)); await new Promise((r) => setTimeout(r, ${holdMs}));`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    out += c;
    if (out.endsWith('\n')) printed?.(JSON.parse(out) as number[]);
  });
  return new Promise((resolve, reject) => child.on('close', (c) => (c === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(`picker exited ${c}`)))));
}

test('test processes picking ports at once never get the same port', async () => {
  // 6 processes × 60 ports out of the ~12,700 below the ephemeral range: without a shared
  // reservation about 4 pairs would share a port in a run (birthday bound: 360² / 2 / 12,700 × 5/6).
  const sets = await Promise.all(Array.from({ length: 6 }, () => picker(60, 1_500)));
  const all = sets.flat();
  assert.equal(all.length, 360);
  assert.equal(new Set(all).size, all.length, 'a port was handed to two processes');
});

test('a port held by a live test process is refused to others; once that process has exited it is free', async () => {
  let held: number | undefined;
  let refusedWhileHeld: boolean | undefined;
  const done = picker(1, 2_000, (ports) => {
    held = ports[0]!;
    refusedWhileHeld = !reservePort(held);
  });
  const [port] = await done;
  assert.equal(port, held);
  assert.equal(refusedWhileHeld, true, 'another process got a port a live one held');
  assert.equal(reservePort(port!), true, 'the port of an exited process stays taken');
  assert.equal(fs.readFileSync(path.join(os.tmpdir(), 'postino-test-ports', String(port)), 'utf8'), String(process.pid));
});
