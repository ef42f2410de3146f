/*
 * Durable queue group commit: enqueues/second of 4 KB messages, every enqueue
 * acknowledged only after a `sync: true` LevelDB batch, with 1, 10 and 100
 * concurrent producers. Without group commit all three would be bounded by one
 * fsync per message.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DurableQueue } from '../common/durable-queue.js';
import { Store } from '../common/store.js';
import { fmt, rssSampler, summarize } from './stats.js';

const BODY = Buffer.alloc(4096, 'm');
const DURATION_MS = 4_000;

async function run(producers: number): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-q-'));
  const store = await Store.open(dir);
  const q = await DurableQueue.open<{ n: number }>(store, 'bench');
  const rss = rssSampler();
  const lat: number[] = [];
  const until = Date.now() + DURATION_MS;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: producers }, async () => {
      while (Date.now() < until) {
        const s = performance.now();
        await q.enqueue({ meta: { n: 1 }, body: BODY });
        lat.push(performance.now() - s);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const peak = rss.stop();
  const l = summarize(lat);
  const perBatch = lat.length / Math.max(1, store.stats.syncedBatches);
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return `  ${String(producers).padStart(3)} producers: ${fmt(lat.length / secs, 0).padStart(7)} enqueues/s  p50 ${fmt(l.p50, 2)} ms  p99 ${fmt(l.p99, 2)} ms  ${fmt(perBatch)} msgs/fsync  peak RSS ${peak} MiB`;
}

export async function benchQueue(): Promise<void> {
  console.log('durable queue, 4 KB messages, sync:true, group commit:');
  for (const p of [1, 10, 100]) console.log(await run(p));
}
