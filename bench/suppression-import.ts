/*
 * npm run bench -- suppress-import: `postino suppress import` of 1,000,000
 * addresses (the CLI as a user runs it, streaming a 24 MB CSV over HTTP) into
 * a hosted node's API, then `postino suppress export` of them back. Prints
 * rows/second for both and the hosted side's peak RSS (it runs in this
 * process; the CSV is never held in memory on either side).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createHttpServer, listenHttp } from '../common/http-server.js';
import { createLogger } from '../common/log.js';
import { Store } from '../common/store.js';
import { registerSuppressionRoutes } from '../engine/suppression-routes.js';
import { LevelSuppressionList } from '../engine/suppression.js';
import { CLI, tempDir } from '../test/helpers/postino.js';
import { fmt, rssSampler } from './stats.js';

const ROWS = 1_000_000;
const KEY = 'bench-key-'.padEnd(43, 'x');

function run(args: string[]): Promise<{ status: number | null; out: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, POSTINO_API_KEY: KEY }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (status) => resolve({ status, out, ms: Date.now() - t0 }));
  });
}

export async function benchSuppressionImport(): Promise<void> {
  const dir = tempDir('bench-suppress');
  const file = path.join(dir, 'million.csv');
  const w = fs.createWriteStream(file);
  w.write('email\n');
  for (let i = 0; i < ROWS; i++) if (!w.write(`customer.${i}@shop-${i % 997}.example.com\n`)) await new Promise<void>((r) => w.once('drain', () => r()));
  await new Promise<void>((r) => w.end(() => r()));
  const store = await Store.open(path.join(dir, 'hosted'));
  const log = createLogger('bench', 'silent');
  const app = createHttpServer(KEY, log);
  registerSuppressionRoutes(app, { store, suppression: new LevelSuppressionList(store), accounts: ['default'] });
  const base = `http://127.0.0.1:${await listenHttp(app, { host: '127.0.0.1', port: 0, what: 'bench', log })}`;
  const rss = rssSampler();
  try {
    const imp = await run(['suppress', 'import', file, '--account', 'default', '--api', base]);
    if (imp.status !== 0) throw new Error(`import failed: ${imp.out}`);
    const exp = await run(['suppress', 'export', '--account', 'default', '--api', base, '--out', path.join(dir, 'export.csv')]);
    const exported = fs.readFileSync(path.join(dir, 'export.csv'), 'utf8').split('\n').length - 2;
    console.log(`csv ${fmt(fs.statSync(file).size / 1e6)} MB, ${ROWS.toLocaleString('en')} rows`);
    console.log(`import  ${fmt(imp.ms / 1000, 2)} s  ${Math.round(ROWS / (imp.ms / 1000)).toLocaleString('en')} rows/s   (${imp.out.trim()})`);
    console.log(`export  ${fmt(exp.ms / 1000, 2)} s  ${Math.round(exported / (exp.ms / 1000)).toLocaleString('en')} rows/s   (${exported.toLocaleString('en')} rows)`);
    console.log(`hosted peak RSS ${fmt(rss.stop())} MiB`);
  } finally {
    await app.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
