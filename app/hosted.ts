/*
 * hosted.ts — one hosted node: listener + engine (rewrap, delivery) + HTTP.
 *
 * Data: <data>/hosted/{db,blobs}; the intake and delivery queues share one
 * LevelDB so the rewrap move is one atomic batch.
 * Shutdown order: stop SMTP intake, stop rewrap, stop delivery (sends in
 * progress finish), close HTTP, close LevelDB.
 */
import path from 'node:path';
import { installDotStuffingFastPath } from '../common/dot-stuffing.js';
import { DurableQueue } from '../common/durable-queue.js';
import { listenHttp } from '../common/http-server.js';
import type { IntakeMeta } from '../common/intake-record.js';
import type { Component, Runtime } from '../common/runtime.js';
import { resolveSecret } from '../common/secrets.js';
import { Store } from '../common/store.js';
import { WorkerLoop } from '../common/worker-loop.js';
import { startListener } from '../listener/listener.js';
import { SeenSpoolIds } from '../common/spool-id.js';
import { createDelivery, type Delivery } from '../engine/delivery/delivery.js';
import { registerDeliveryRoutes } from '../engine/delivery/http-routes.js';
import { EventLog } from '../engine/events/event-log.js';
import { registerEventRoutes } from '../engine/events/http-routes.js';
import { createHostedApi } from '../engine/http-api.js';
import type { DeliveryMeta } from '../engine/delivery/delivery-record.js';
import { RecipientDb } from '../engine/recipient-db.js';
import { resolveRewrapSettings } from '../engine/rewrap/settings.js';
import { RewrapWorker } from '../engine/rewrap/worker.js';
import { SuppressionList } from '../engine/suppression.js';

/** Longer than any single rewrap or delivery transaction. */
const VISIBILITY_MS = 10 * 60_000;
/** Expired forwarder spool ids are forgotten this often (they only cost a key each). */
const SPOOL_ID_SWEEP_MS = 60 * 60_000;

export interface Hosted extends Component {
  smtpPort: number;
  httpPort: number;
  intake: DurableQueue<IntakeMeta>;
  delivery: DurableQueue<DeliveryMeta>;
  events: EventLog;
  suppression: SuppressionList;
  recipients: RecipientDb;
  deliveryStage: Delivery;
}

export async function startHosted(rt: Runtime): Promise<Hosted> {
  installDotStuffingFastPath(); // nodemailer's DATA transparency without a JS loop per byte (delivery)
  const { config, log } = rt;
  const apiKey = resolveSecret(rt.dataDir, 'api-key', config.http.apiKeyEnv, rt.env);
  const rewrapSettings = resolveRewrapSettings(config, rt.dataDir);
  const store = await Store.open(path.join(rt.dataDir, 'hosted'));
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = new SuppressionList(store);

  const recipients = new RecipientDb(store);
  const rewrap = new RewrapWorker({ intake, delivery, events, services: { suppression, recipients }, settings: rewrapSettings, log: log.child({ component: 'engine' }) });
  const rewrapLoop = new WorkerLoop<IntakeMeta>({ queue: intake, concurrency: config.engine.concurrency, visibilityMs: VISIBILITY_MS, handle: (r) => rewrap.handle(r), log });

  const deliveryStage = await createDelivery({
    config: config.delivery,
    accounts: config.accounts,
    hostname: config.engine.hostname,
    store,
    queue: delivery,
    events,
    suppression,
    visibilityMs: VISIBILITY_MS,
    log: log.child({ component: 'delivery' }),
  });

  // Effectively-once hop from the forwarders (common/spool-id.ts).
  const spoolIds = new SeenSpoolIds(store, config.listener.spoolIdTtlSeconds * 1000);
  const sweep = (): void => void spoolIds.sweep().catch((err: unknown) => log.warn({ err }, 'spool id sweep failed'));
  sweep();
  const sweeper = setInterval(sweep, SPOOL_ID_SWEEP_MS).unref();
  const listener = await startListener({ config: config.listener, accounts: config.accounts, dataDir: rt.dataDir, queue: intake, log: log.child({ component: 'listener' }), spoolIds });
  // SIGHUP: re-read the listener's certificate (renewal) without dropping sessions.
  const onHup = (): void => void listener.reloadTls().catch((err: unknown) => log.error({ err }, 'TLS reload failed; keeping the old certificate'));
  process.on('SIGHUP', onHup);
  const api = createHostedApi(apiKey, log);
  registerDeliveryRoutes(api, intake, deliveryStage);
  registerEventRoutes(api, events);
  const httpPort = await listenHttp(api, { host: config.http.host, port: config.http.port, what: 'hosted', log });
  rewrapLoop.start();
  deliveryStage.start();

  return {
    smtpPort: listener.port,
    httpPort,
    intake,
    delivery,
    events,
    suppression,
    recipients,
    deliveryStage,
    async close() {
      clearInterval(sweeper);
      process.off('SIGHUP', onHup);
      await listener.close();
      await rewrapLoop.stop();
      await deliveryStage.stop();
      await api.close();
      await store.close();
    },
  };
}
