/*
 * npm run bench -- recipients-import: `postino recipients import` of 1,000,000
 * rows with three merge fields (the CLI as a user runs it, streaming a ~60 MB
 * CSV over HTTP) into the recipient routes of a hosted API, then the same file
 * again (every row unchanged: the cost of resuming a cut import), then
 * `postino recipients export` back. Prints rows/second for each and the
 * hosted side's peak RSS (it runs in this process).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHttpServer, listenHttp } from '../common/http-server.js';
import { createLogger } from '../common/log.js';
import { Store } from '../common/store.js';
import { EventLog } from '../engine/events/event-log.js';
import { LevelRecipientDb } from '../engine/recipient-db.js';
import { RecipientEraser } from '../engine/recipients/erase.js';
import { Pseudonymizer } from '../engine/recipients/pseudonym.js';
import { registerRecipientRoutes } from '../engine/recipients/routes.js';
import { LevelSuppressionList } from '../engine/suppression.js';
import { CLI, tempDir } from '../test/helpers/postino.js';
import { fmt, rssSampler } from './stats.js';

const ROWS = 1_000_000;
const KEY = 'bench-key-'.padEnd(43, 'x');

/** Runs the CLI; `cpuMs` is the CPU time this process (the hosted side, LevelDB's threads included) spent meanwhile. */
function run(args: string[]): Promise<{ status: number | null; out: string; ms: number; cpuMs: number }> {
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, POSTINO_API_KEY: KEY }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (status) => {
      const cpu = process.cpuUsage(cpu0);
      resolve({ status, out, ms: Date.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 });
    });
  });
}

export async function benchRecipientsImport(): Promise<void> {
  const dir = tempDir('bench-recipients');
  const file = path.join(dir, 'million.csv');
  const w = fs.createWriteStream(file);
  w.write('address,first_name,city,plan\n');
  for (let i = 0; i < ROWS; i++) if (!w.write(`customer.${i}@shop-${i % 997}.example.com,Name${i},City ${i % 300},plan-${i % 5}\n`)) await new Promise<void>((r) => w.once('drain', () => r()));
  await new Promise<void>((r) => w.end(() => r()));
  const store = await Store.open(path.join(dir, 'hosted'));
  const log = createLogger('bench', 'silent');
  const events = await EventLog.open(store);
  const pseudonyms = new Pseudonymizer('p'.repeat(43));
  const db = new LevelRecipientDb(store, pseudonyms);
  const suppression = new LevelSuppressionList(store);
  const eraser = new RecipientEraser({ store, events, db, suppression, pseudonyms, log });
  const app = createHttpServer(KEY, log);
  registerRecipientRoutes(app, { store, db, suppression, eraser, accounts: ['default'] });
  const base = `http://127.0.0.1:${await listenHttp(app, { host: '127.0.0.1', port: 0, what: 'bench', log })}`;
  const rss = rssSampler();
  const load = os.loadavg()[0]!;
  try {
    const imp = await run(['recipients', 'import', file, '--account', 'default', '--api', base]);
    if (imp.status !== 0) throw new Error(`import failed: ${imp.out}`);
    const again = await run(['recipients', 'import', file, '--account', 'default', '--api', base]);
    if (again.status !== 0) throw new Error(`second import failed: ${again.out}`);
    const out = path.join(dir, 'export.csv');
    const exp = await run(['recipients', 'export', '--account', 'default', '--api', base, '--out', out]);
    if (exp.status !== 0) throw new Error('export failed');
    const exported = fs.readFileSync(out, 'utf8').split('\n').length - 2;
    console.log(`csv ${fmt(fs.statSync(file).size / 1e6)} MB, ${ROWS.toLocaleString('en')} rows, 3 fields`);
    const cpu = (r: { cpuMs: number }): string => `hosted CPU ${fmt(r.cpuMs / 1000, 1)} s`;
    console.log(`load average at start ${load.toFixed(1)} (figures are for a quiet machine only when it is under 1)`);
    console.log(`import   ${fmt(imp.ms / 1000, 2)} s  ${Math.round(ROWS / (imp.ms / 1000)).toLocaleString('en')} rows/s  ${cpu(imp)}  (${imp.out.trim()})`);
    console.log(`again    ${fmt(again.ms / 1000, 2)} s  ${Math.round(ROWS / (again.ms / 1000)).toLocaleString('en')} rows/s  ${cpu(again)}  (${again.out.trim()})`);
    console.log(`export   ${fmt(exp.ms / 1000, 2)} s  ${Math.round(exported / (exp.ms / 1000)).toLocaleString('en')} rows/s  ${cpu(exp)}  (${exported.toLocaleString('en')} rows)`);
    console.log(`hosted peak RSS ${fmt(rss.stop())} MiB`);
  } finally {
    await app.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
