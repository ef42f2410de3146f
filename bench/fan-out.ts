/*
 * npm run bench -- fan-out
 *
 * Memory of a wide fan-out: peak RSS of a child process rewrapping one 250 KB
 * message to 1,000 and to 2,000 recipients (engine/rewrap/worker.ts commits
 * copies in batches of BATCH_MAX_COPIES / BATCH_MAX_BYTES). Acceptance: the
 * peak is roughly the same for both, far below the 250 MB (500 MB) that
 * preparing every copy before one commit held.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { drain, html20k, message, rig, submit } from './rewrap.js';
import { fmt, rssSampler } from './stats.js';

const MESSAGE_BYTES = 250 * 1000;
const RECIPIENTS = [1000, 2000];

async function child(rcpts: number): Promise<void> {
  const r = await rig({});
  const html = html20k();
  const body = message('', html.repeat(Math.ceil(MESSAGE_BYTES / html.length)).slice(0, MESSAGE_BYTES - 2_000));
  await submit(r, body, rcpts, 'r');
  const base = process.memoryUsage.rss();
  const rss = rssSampler();
  const t0 = performance.now();
  await drain(r);
  const secs = (performance.now() - t0) / 1000;
  const peakMiB = rss.stop();
  const copies = r.delivery.size;
  await r.close();
  console.log(JSON.stringify({ size: body.length, copies, secs, peakMiB, baseMiB: Math.round(base / 1048576) }));
}

export async function benchFanOut(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  console.log('fan-out memory (one message, separate process per run):');
  for (const n of RECIPIENTS) {
    const c = spawnSync(process.execPath, ['--import', 'tsx', self, '--fan-out-child', String(n)], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (c.status !== 0) throw new Error(`fan-out child failed: ${c.stderr}`);
    const r = JSON.parse(c.stdout.trim().split('\n').at(-1)!) as { size: number; copies: number; secs: number; peakMiB: number; baseMiB: number };
    console.log(
      `  ${(r.size / 1000).toFixed(0)} KB × ${r.copies} recipients: ${fmt(r.secs)} s, ${fmt(r.copies / r.secs, 0)} copies/s; peak RSS ${r.peakMiB} MiB (before: ${r.baseMiB} MiB; all copies at once would be ${((r.size * r.copies) / 1048576).toFixed(0)} MB)`,
    );
  }
}

const at = process.argv.indexOf('--fan-out-child');
if (at !== -1) await child(Number(process.argv[at + 1]));
