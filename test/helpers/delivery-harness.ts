/*
 * The engine's delivery stage in-process, in front of real capture sinks on
 * loopback: copies are enqueued straight into the durable delivery queue (what
 * rewrap does), outcomes are read from the event log and the sinks' folders.
 */
import path from 'node:path';
import { parseConfig, type Config, type Stream } from '../../common/config.js';
import { DurableQueue } from '../../common/durable-queue.js';
import type { PostinoEvent } from '../../common/events.js';
import { createLogger } from '../../common/log.js';
import { Store } from '../../common/store.js';
import { createDelivery, type Delivery } from '../../engine/delivery/delivery.js';
import type { DeliveryMeta } from '../../engine/delivery/delivery-record.js';
import { EventLog } from '../../engine/events/event-log.js';
import { LevelSuppressionList, type SuppressionList } from '../../engine/suppression.js';
import { startSink, type CaptureSink } from '../../sink/capture-sink.js';
import { tempDir } from './postino.js';

export interface Harness {
  dir: string;
  config: Config;
  store: Store;
  queue: DurableQueue<DeliveryMeta>;
  events: EventLog;
  suppression: SuppressionList;
  delivery: Delivery;
  /** Enqueues one copy; resolves with its queue id. */
  send(recipient: string, opts?: { account?: string; stream?: Stream; subject?: string; size?: number }): Promise<string>;
  all(): Promise<PostinoEvent[]>;
  waitFor(pred: (events: PostinoEvent[]) => boolean, timeoutMs: number): Promise<PostinoEvent[]>;
  close(): Promise<void>;
}

const log = createLogger('test', process.env.POSTINO_TEST_LOG ?? 'silent');

/** Starts a capture sink on a free port (or `port`) with the given rules. */
export async function sink(rules: unknown[] = [], port = 0, dir = tempDir('sink')): Promise<CaptureSink> {
  const cfg = parseConfig({ sink: { port, rules } }).sink;
  return startSink(cfg, dir, log);
}

/** `suppressionOf`: the suppression list's backend on the harness's store (default LevelDB). */
export async function startDeliveryHarness(raw: Record<string, unknown>, dir = tempDir('delivery'), suppressionOf: (store: Store) => SuppressionList = (store) => new LevelSuppressionList(store)): Promise<Harness> {
  const config = parseConfig(raw);
  const store = await Store.open(path.join(dir, 'hosted'));
  const queue = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = suppressionOf(store);
  const delivery = await createDelivery({ config: config.delivery, accounts: config.accounts, hostname: 'engine.test', store, queue, events, suppression, visibilityMs: 10 * 60_000, log });
  delivery.start();
  let n = 0;
  const h: Harness = {
    dir,
    config,
    store,
    queue,
    events,
    suppression,
    delivery,
    async send(recipient, opts = {}) {
      const i = n++;
      const pad = opts.size ? 'x'.repeat(opts.size) : '';
      const body = Buffer.from(`From: shop@example.org\r\nTo: ${recipient}\r\nSubject: ${opts.subject ?? `copy ${i}`}\r\nX-Test-Id: h-${i}\r\n\r\nHello ${i}\r\n${pad}\r\n`);
      const meta: DeliveryMeta = {
        envelope: { mailFrom: 'bounce@example.org', rcptTo: [recipient], clientAddress: '127.0.0.1', heloName: 'test', receivedAt: Date.now(), tls: false },
        pending: [recipient],
        intakeId: `intake-${i}`,
        account: opts.account ?? 'default',
        recipient,
        sender: 'shop@example.org',
        stream: opts.stream ?? 'transactional',
      };
      return (await queue.enqueue({ meta, body })).id;
    },
    all: () => events.read(0, 1_000_000),
    async waitFor(pred, timeoutMs) {
      const until = Date.now() + timeoutMs;
      let evs = await h.all();
      while (!pred(evs) && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
        evs = await h.all();
      }
      return evs;
    },
    async close() {
      await delivery.stop();
      await suppression.close();
      await store.close();
    },
  };
  return h;
}
