import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TooLargeError, WRITE_GATHER_BYTES, writeFileSynced, type HoldBudget } from '../../common/fsync.js';
import { tempDir } from '../helpers/postino.js';

/**
 * Counts the file writes writeFileSynced makes (through fs.write / fs.writev): each call is one
 * trip to the thread pool and one system call. The writes still happen; this only counts them.
 */
function countingFileWrites(): { count: () => number; restore: () => void } {
  const { write, writev } = fs;
  let n = 0;
  const counted = <F extends (...a: never[]) => unknown>(f: F): F =>
    function (this: unknown, ...a: Parameters<F>) {
      n++;
      return f.apply(this, a);
    } as F;
  Object.assign(fs, { write: counted(write), writev: counted(writev) });
  return {
    count: () => n,
    restore: () => Object.assign(fs, { write, writev }),
  };
}

/** 1 MiB as a TLS socket hands it over: 64 records of 16 KiB, each different. */
const records = Array.from({ length: 64 }, (_, i) => Buffer.alloc(16 * 1024, 65 + (i % 26)));

/** A budget that counts what is held and never lets it past `max`. */
function countingBudget(max: number): HoldBudget & { held: number; peak: number } {
  const b = {
    held: 0,
    peak: 0,
    take(n: number): boolean {
      if (b.held + n > max) return false;
      b.held += n;
      b.peak = Math.max(b.peak, b.held);
      return true;
    },
    give(n: number): void {
      b.held -= n;
    },
  };
  return b;
}

async function* slowly(chunks: Buffer[]): AsyncGenerator<Buffer> {
  for (const c of chunks) {
    await new Promise((r) => setImmediate(r));
    yield c;
  }
}

test('a body that arrives in 16 KiB records is written in a few gathered writes, byte for byte, holding what the budget allows', async () => {
  const dir = tempDir('fsync');
  const file = path.join(dir, 'gathered');
  const budget = countingBudget(8 * 1024 * 1024);
  const writes = countingFileWrites();
  try {
    assert.equal(await writeFileSynced(file, slowly(records), Infinity, budget), 1024 * 1024);
  } finally {
    writes.restore();
  }
  // 1 MiB in 256 KiB writes: 4 (one per record was 64).
  assert.equal(writes.count(), (1024 * 1024) / WRITE_GATHER_BYTES);
  assert.ok(fs.readFileSync(file).equals(Buffer.concat(records)));
  assert.ok(budget.peak < WRITE_GATHER_BYTES, `held at most one write's worth (${budget.peak})`);
  assert.equal(budget.held, 0, 'everything held is given back');
});

test('a budget that holds nothing: every record is written as it comes, and the file is the same', async () => {
  const dir = tempDir('fsync');
  const file = path.join(dir, 'ungathered');
  const budget = countingBudget(0);
  const writes = countingFileWrites();
  try {
    await writeFileSynced(file, slowly(records), Infinity, budget);
  } finally {
    writes.restore();
  }
  assert.equal(writes.count(), records.length, 'one write per record');
  assert.ok(fs.readFileSync(file).equals(Buffer.concat(records)));
  assert.equal(budget.held, 0);
});

test('too large, or a source that fails midway: no file left, and the budget given back', async () => {
  const dir = tempDir('fsync');
  const budget = countingBudget(8 * 1024 * 1024);
  await assert.rejects(writeFileSynced(path.join(dir, 'big'), slowly(records), 300 * 1024, budget), TooLargeError);
  assert.equal(budget.held, 0);
  async function* broken(): AsyncGenerator<Buffer> {
    yield* slowly(records.slice(0, 10));
    throw new Error('connection reset');
  }
  await assert.rejects(writeFileSynced(path.join(dir, 'broken'), broken(), Infinity, budget), /connection reset/);
  assert.equal(budget.held, 0);
  assert.deepEqual(fs.readdirSync(dir), []);
});
