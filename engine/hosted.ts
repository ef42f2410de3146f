/*
 * hosted.ts — one hosted node: listener + engine (rewrap, delivery) + HTTP.
 *
 * Data: <data>/hosted/{db,blobs}; the intake and delivery queues share one
 * LevelDB so the rewrap move is one atomic batch.
 * Shutdown order: stop SMTP intake, stop rewrap, stop delivery (sends in
 * progress finish), close HTTP, close LevelDB.
 */
import path from 'node:path';
import { DurableQueue } from '../common/durable-queue.js';
import { listenHttp } from '../common/http-server.js';
import type { IntakeMeta } from '../common/intake-record.js';
import type { Component, Runtime } from '../common/runtime.js';
import { resolveSecret } from '../common/secrets.js';
import { Store } from '../common/store.js';
import { WorkerLoop } from '../common/worker-loop.js';
import { startListener } from '../listener/listener.js';
import { createDelivery, type Delivery } from './delivery/delivery.js';
import { registerDeliveryRoutes } from './delivery/http-routes.js';
import { EventLog } from './event-log.js';
import { registerEventRoutes } from './events-route.js';
import { createHostedApi } from './http-api.js';
import type { DeliveryMeta } from './delivery-record.js';
import { RewrapWorker } from './rewrap-worker.js';
import { SuppressionList } from './suppression.js';

/** Longer than any single rewrap or delivery transaction. */
const VISIBILITY_MS = 10 * 60_000;

export interface Hosted extends Component {
  smtpPort: number;
  httpPort: number;
  intake: DurableQueue<IntakeMeta>;
  delivery: DurableQueue<DeliveryMeta>;
  events: EventLog;
  suppression: SuppressionList;
  deliveryStage: Delivery;
}

export async function startHosted(rt: Runtime): Promise<Hosted> {
  const { config, log } = rt;
  const apiKey = resolveSecret(rt.dataDir, 'api-key', config.http.apiKeyEnv, rt.env);
  const store = await Store.open(path.join(rt.dataDir, 'hosted'));
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  const suppression = new SuppressionList(store);

  const rewrap = new RewrapWorker(intake, delivery, config.engine.hostname, log.child({ component: 'engine' }));
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

  const listener = await startListener(config.listener, rt.dataDir, intake, log.child({ component: 'listener' }));
  const api = createHostedApi(apiKey, intake, delivery, log);
  registerDeliveryRoutes(api, intake, deliveryStage);
  registerEventRoutes(api, events);
  const httpPort = await listenHttp(api, config.http.host, config.http.port, 'hosted', log);
  rewrapLoop.start();
  deliveryStage.start();

  return {
    smtpPort: listener.port,
    httpPort,
    intake,
    delivery,
    events,
    suppression,
    deliveryStage,
    async close() {
      await listener.close();
      await rewrapLoop.stop();
      await deliveryStage.stop();
      await api.close();
      await store.close();
    },
  };
}
