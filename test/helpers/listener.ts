/*
 * An in-process hosted listener on a free port, over a real LevelDB intake
 * queue in a temp folder, with the development TLS pair; log lines captured.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { parseConfig } from '../../common/config.js';
import { DurableQueue } from '../../common/durable-queue.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import { ensureDevTls, secretsDir } from '../../common/secrets.js';
import { SeenSpoolIds } from '../../common/spool-id.js';
import { Store } from '../../common/store.js';
import { startListener, type Listener } from '../../listener/listener.js';
import { tempDir } from './postino.js';

export interface TestListener {
  port: number;
  listener: Listener;
  queue: DurableQueue<IntakeMeta>;
  store: Store;
  dataDir: string;
  ca: string;
  caFile: string;
  logs: Array<Record<string, unknown>>;
  /** Bodies of every message on the intake queue. */
  messages(): Promise<Array<{ meta: IntakeMeta; body: string }>>;
  close(): Promise<void>;
}

export async function startTestListener(config: Record<string, unknown> = {}, opts: { dataDir?: string; now?: () => number; spoolIds?: boolean } = {}): Promise<TestListener> {
  const dataDir = opts.dataDir ?? tempDir('listener');
  const tlsPaths = await ensureDevTls(secretsDir(dataDir));
  const raw = config as { listener?: Record<string, unknown> };
  const cfg = parseConfig({ ...config, listener: { port: 0, ...raw.listener } });
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const store = await Store.open(path.join(dataDir, 'hosted'));
  const queue = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const spoolIds = opts.spoolIds ? new SeenSpoolIds(store, cfg.listener.spoolIdTtlSeconds * 1000) : undefined;
  const listener = await startListener({ config: cfg.listener, accounts: cfg.accounts, dataDir, queue, log, now: opts.now, spoolIds });
  return {
    port: listener.port,
    listener,
    queue,
    store,
    dataDir,
    ca: fs.readFileSync(tlsPaths.caFile, 'utf8'),
    caFile: tlsPaths.caFile,
    logs,
    async messages() {
      const out: Array<{ meta: IntakeMeta; body: string }> = [];
      for await (const [, v] of store.db.iterator({ gte: 'q!intake!m!', lt: 'q!intake!m~' })) {
        const rec = JSON.parse(v.toString('utf8')) as Parameters<DurableQueue<IntakeMeta>['readBody']>[0];
        out.push({ meta: rec.meta, body: (await queue.readBody(rec)).toString('utf8') });
      }
      return out;
    },
    async close() {
      await listener.close();
      await store.close();
    },
  };
}
