/*
 * floor-process.ts — starts bench/intake-floor.ts (a bare Node responder that
 * group-commits each body to LevelDB before its 250) in a process of its own,
 * with the forwarder's V8 and allocator settings, for the benchmarks that put
 * it beside the forwarder (`bench -- forwarder`'s `-d` load, `bench --
 * forwarder-parts`). Its stdout (the log, in the queue modes) goes to
 * <dir>/floor.log, as the forwarder's does there.
 * Side effects: <dir>, a process the caller stops (pipeline-parts.ts stopChild).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withAllocatorEnv } from '../app/allocator-env.js';
import { V8_HEAP_FLAGS } from '../app/heap-flags.js';
import type { FloorMode } from './intake-floor.js';
import { waitForPort } from '../test/helpers/ports.js';

const FLOOR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'intake-floor.ts');

export async function spawnFloor(port: number, dir: string, mode: FloorMode): Promise<ChildProcess> {
  fs.mkdirSync(dir, { recursive: true });
  const out = fs.openSync(path.join(dir, 'floor.log'), 'w');
  const child = spawn(process.execPath, [...V8_HEAP_FLAGS, '--import', 'tsx', FLOOR, String(port), path.join(dir, 'db'), mode], { env: withAllocatorEnv(process.env), stdio: ['ignore', out, 'ignore'] });
  fs.closeSync(out); // the child has its own copy
  await waitForPort(port);
  return child;
}
