/*
 * npm run bench -- rewrap
 *
 * 1. Throughput: copies/second of the real rewrap worker (intake → pipeline →
 *    delivery queue, one synced batch per message) for a 20 KB HTML message,
 *    plain and with tracking + footer + DKIM, 4 messages at once
 *    (engine.concurrency) of 20 recipients each.
 * 2. Suppression: time to rewrap a 10-recipient message with an empty
 *    suppression list and with 1,000,000 suppressed addresses (acceptance:
 *    within 2×).
 * 3. Memory: peak RSS of a child process rewrapping one message with a 20 MB
 *    attachment to 100 recipients (tracking, footer and DKIM on), against the
 *    2 GB that 100 in-memory copies would take.
 * Postfix has no per-recipient rewrite to compare with; the disk baseline for
 * (3) is printed instead: copying the 20 MB message 100 times with fsync.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../common/config.js';
import { DurableQueue } from '../common/durable-queue.js';
import type { IntakeMeta } from '../common/intake-record.js';
import { createLogger } from '../common/log.js';
import { Store } from '../common/store.js';
import type { DeliveryMeta } from '../engine/delivery/delivery-record.js';
import { generateDkimKey } from '../engine/rewrap/dkim-keys.js';
import { EventLog } from '../engine/events/event-log.js';
import { LevelRecipientDb } from '../engine/recipient-db.js';
import { resolveRewrapSettings } from '../engine/rewrap/settings.js';
import { RewrapWorker } from '../engine/rewrap/worker.js';
import { LevelSuppressionList, type SuppressionList } from '../engine/suppression.js';
import { fmt, rssSampler, summarize } from './stats.js';
import { CopyIndex } from '../engine/feedback/copy-index.js';

const CONCURRENCY = 4;

export function html20k(): string {
  const rows: string[] = [];
  let i = 0;
  while (rows.join('').length < 19_000) {
    rows.push(`<tr><td><a href="https://shop.example.com/p/${i}?utm_source=news&amp;id=${i}">Product ${i}</a></td><td>Lorem ipsum dolor sit amet, {{first|friend}}, consectetur adipiscing elit ${i}.</td></tr>\n`);
    i++;
  }
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>News</title></head><body><h1>Hello {{first|friend}}</h1><table>\n${rows.join('')}</table></body></html>\n`;
}

export function message(extraHeaders: string, body: string): Buffer {
  return Buffer.from(
    `From: News <news@example.org>\r\nTo: list@example.org\r\nSubject: November news\r\nMessage-ID: <${randomBytes(6).toString('hex')}@example.org>\r\nMIME-Version: 1.0\r\n${extraHeaders}Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${body.replace(/=/g, '=3D').replace(/\n/g, '\r\n')}`,
  );
}

interface Rig {
  dir: string;
  store: Store;
  intake: DurableQueue<IntakeMeta>;
  delivery: DurableQueue<DeliveryMeta>;
  suppression: SuppressionList;
  worker: RewrapWorker;
  close(): Promise<void>;
}

export async function rig(accountEngine: Record<string, unknown>, keyDir?: string): Promise<Rig> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-rw-'));
  const engine = { ...accountEngine };
  if (keyDir) engine.dkim = { keyFile: generateDkimKey(keyDir, 'example.org', `b${randomBytes(3).toString('hex')}`).keyFile };
  const store = await Store.open(path.join(dir, 'hosted'));
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = new LevelSuppressionList(store);
  const config = parseConfig({ engine: { bounceDomain: 'bounce.example.net' }, accounts: [{ id: 'default', engine }] });
  const worker = new RewrapWorker({ intake, delivery, events, services: { suppression, recipients: new LevelRecipientDb(store), copies: new CopyIndex(store) }, settings: resolveRewrapSettings(config, dir), log: createLogger('bench', 'silent') });
  return {
    dir,
    store,
    intake,
    delivery,
    suppression,
    worker,
    async close() {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function submit(r: Rig, body: Buffer, rcpts: number, prefix: string): Promise<void> {
  const rcptTo = Array.from({ length: rcpts }, (_, i) => `${prefix}${i}@example.com`);
  await r.intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'news@example.org', rcptTo, clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body });
}

/** Leases and rewraps everything on the intake queue, CONCURRENCY at a time; per-message latencies in ms. */
export async function drain(r: Rig): Promise<number[]> {
  const lat: number[] = [];
  for (;;) {
    const batch = await r.intake.lease(CONCURRENCY, 600_000);
    if (batch.length === 0) return lat;
    await Promise.all(
      batch.map(async (rec) => {
        const s = performance.now();
        await r.worker.handle(rec);
        lat.push(performance.now() - s);
      }),
    );
  }
}

export async function throughput(label: string, accountEngine: Record<string, unknown>, dkim: boolean): Promise<void> {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-key-'));
  const r = await rig(accountEngine, dkim ? keyDir : undefined);
  const body = message('', html20k());
  const MESSAGES = 40;
  const RCPTS = 20;
  for (let m = 0; m < MESSAGES; m++) await submit(r, body, RCPTS, `m${m}-r`);
  const rss = rssSampler();
  const t0 = performance.now();
  const lat = await drain(r);
  const secs = (performance.now() - t0) / 1000;
  const l = summarize(lat);
  console.log(
    `  ${label.padEnd(30)} ${fmt((MESSAGES * RCPTS) / secs, 0).padStart(6)} copies/s  (${(body.length / 1024).toFixed(1)} KB message, ${RCPTS} rcpts)  per message p50 ${fmt(l.p50)} ms p99 ${fmt(l.p99)} ms  peak RSS ${rss.stop()} MiB`,
  );
  if (r.delivery.size !== MESSAGES * RCPTS) throw new Error(`expected ${MESSAGES * RCPTS} copies, got ${r.delivery.size}`);
  await r.close();
  fs.rmSync(keyDir, { recursive: true, force: true });
}

export async function suppressionFlat(): Promise<void> {
  const SUPPRESSED = 1_000_000;
  const RUNS = 200;
  const body = message('X-Postino-Stream: bulk\r\n', '<p>Hello</p>\n');
  const empty = await rig({});
  const full = await rig({});
  const t0 = performance.now();
  const BATCH = 20_000;
  for (let i = 0; i < SUPPRESSED; i += BATCH) {
    const entries = Array.from({ length: BATCH }, (_, k) => ({ address: `user${i + k}@example.com`, scope: '*', reason: 'unsubscribe' as const, at: '2026-11-25T00:00:00.000Z' }));
    await full.store.commit(await full.suppression.addOps('default', entries), { sync: false });
  }
  await full.store.db.compactRange('s!', 's~');
  const loadSecs = (performance.now() - t0) / 1000;
  // Interleaved, one message at a time, so that load from other processes hits both sides alike.
  // Ten recipients: two on the list (suppressed), eight not (a miss is the common case).
  const lat = { empty: [] as number[], full: [] as number[] };
  for (let i = 0; i < RUNS; i++) {
    for (const [name, r] of [['empty', empty], ['full', full]] as const) {
      const rcptTo = [`user${(i * 7919) % SUPPRESSED}@example.com`, `user${(i * 104729) % SUPPRESSED}@example.com`, ...Array.from({ length: 8 }, (_, k) => `new${i}-${k}@example.com`)];
      await r.intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'news@example.org', rcptTo, clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body });
      const [rec] = await r.intake.lease(1, 600_000);
      const s = performance.now();
      await r.worker.handle(rec!);
      lat[name].push(performance.now() - s);
    }
  }
  const copiesFull = full.delivery.size;
  await empty.close();
  await full.close();
  const e = summarize(lat.empty);
  const f = summarize(lat.full);
  console.log(`  empty suppression list:                    p50 ${fmt(e.p50, 2)} ms  p99 ${fmt(e.p99, 2)} ms per 10-recipient message`);
  console.log(`  ${SUPPRESSED.toLocaleString('en-US')} suppressed (loaded in ${fmt(loadSecs)} s): p50 ${fmt(f.p50, 2)} ms  p99 ${fmt(f.p99, 2)} ms per 10-recipient message (${copiesFull / RUNS} copies each: 2 suppressed)  → p50 ratio ${fmt(f.p50 / e.p50, 2)} (acceptance: ≤ 2)`);
}

/** Child-process part: one 20 MB attachment message to 100 recipients; prints its peak RSS. */
async function bigChild(): Promise<void> {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-key-'));
  const r = await rig({ track: { opens: true, clicks: true }, footer: { enabled: true, text: 'ACME', html: '<p>ACME</p>' } }, keyDir);
  const boundary = 'b-' + randomBytes(6).toString('hex');
  const head = Buffer.from(
    `From: shop@example.org\r\nTo: list@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n--${boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See <a href="https://example.com/">the file</a>.</p>\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="big.bin"\r\n\r\n`,
  );
  // Written to a file in 1 MB pieces (a multiple of 3 bytes: no base64 padding mid-stream) and enqueued as a stream: the benchmark itself never holds the message.
  const file = path.join(r.dir, 'big.eml');
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, head);
  for (let i = 0; i < 15; i++) fs.writeSync(fd, randomBytes(1023 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n') + '\r\n');
  fs.writeSync(fd, `--${boundary}--\r\n`);
  fs.closeSync(fd);
  const size = fs.statSync(file).size;
  await r.intake.enqueue({ meta: { account: 'default', envelope: { mailFrom: 'shop@example.org', rcptTo: Array.from({ length: 100 }, (_, i) => `big${i}@example.com`), clientAddress: '127.0.0.1', heloName: 'fwd', receivedAt: Date.now(), tls: true } }, body: fs.createReadStream(file) });
  fs.rmSync(file);
  const rss = rssSampler();
  const base = process.memoryUsage.rss();
  const t0 = performance.now();
  await drain(r);
  const secs = (performance.now() - t0) / 1000;
  const copies = r.delivery.size;
  let written = 0;
  for await (const rec of r.delivery.records()) written += rec.body.size;
  await r.close();
  fs.rmSync(keyDir, { recursive: true, force: true });
  console.log(JSON.stringify({ size, copies, secs, written, peakMiB: rss.stop(), baseMiB: Math.round(base / 1048576), maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }));
}

export async function bigMessage(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const child = spawnSync(process.execPath, ['--import', 'tsx', self, '--big-child'], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (child.status !== 0) throw new Error(`big-message child failed: ${child.stderr}`);
  const r = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { size: number; copies: number; secs: number; written: number; peakMiB: number; baseMiB: number; maxRssMiB: number };
  console.log(
    `  ${(r.size / 1048576).toFixed(1)} MB message × ${r.copies} recipients (tracking, footer, DKIM): ${fmt(r.secs)} s, ${fmt(r.copies / r.secs)} copies/s, ${(r.written / 1048576).toFixed(0)} MB written; peak RSS ${r.maxRssMiB} MiB (process before: ${r.baseMiB} MiB; 100 in-memory copies would be ${((r.size * r.copies) / 1048576).toFixed(0)} MB)`,
  );
  // Disk baseline: the same bytes copied 100 times with fsync.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postino-bench-cp-'));
  const src = path.join(dir, 'src');
  fs.writeFileSync(src, randomBytes(r.size));
  const t0 = performance.now();
  for (let i = 0; i < r.copies; i++) {
    fs.copyFileSync(src, path.join(dir, `c${i}`));
    const fd = fs.openSync(path.join(dir, `c${i}`), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
  const cpSecs = (performance.now() - t0) / 1000;
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`  disk baseline: copyFile + fsync of the same ${r.copies} × ${(r.size / 1048576).toFixed(1)} MB: ${fmt(cpSecs)} s`);
}

export async function benchRewrap(): Promise<void> {
  console.log('throughput (rewrap worker, 4 messages at once, one synced batch per message):');
  await throughput('plain (no tracking/footer/DKIM)', {}, false);
  await throughput('tracking + footer + DKIM', { track: { opens: true, clicks: true }, footer: { enabled: true, text: 'ACME Ltd, {{unsubscribe_url}}', html: '<p>ACME Ltd <a href="{{unsubscribe_url}}">unsubscribe</a></p>' } }, true);
  console.log('suppression lookups (bulk 10-recipient message, LevelDB point reads):');
  await suppressionFlat();
  console.log('memory (separate process):');
  await bigMessage();
}

if (process.argv.includes('--big-child')) await bigChild();
