/*
 * events-stage.ts — the event log's indexes and readers on one hosted node:
 * the message-history and recipient indexes and statistics deltas (EventLog indexers, so
 * every writer commits them with its events), the statistics fold, retention,
 * webhooks, the reputation brake and their routes.
 *
 * `indexEvents` must run right after EventLog.open, before any writer
 * prepares an event; `startEventReaders` once the HTTP API exists.
 * Config: events.* (common/config.ts), accounts[].webhooks.
 * Side effects: timers; LevelDB reads and writes; HTTP POSTs (webhooks).
 */
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { AccountConfig, EventsConfig } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';
import { EventMetrics } from './events-metrics.js';
import { registerEventRoutes } from './http-routes.js';
import type { FeedSource } from './feed-source.js';
import { historyIndexer, MessageHistoryIndex } from './message-history.js';
import { RecipientIndex } from './recipient-index.js';
import { registerBrakeRoutes } from './brake-routes.js';
import { ReputationBrake, type AccountSwitch } from './reputation-brake.js';
import type { BrakeRecords } from './brake-records.js';
import { Retention } from './retention.js';
import { FOLD_INTERVAL_MS, Stats, type StatsCounters } from './stats.js';
import { registerStatsRoutes } from './stats-routes.js';
import { registerWebhookRoutes } from './webhook-routes.js';
import { WebhookDispatcher, type WebhookSource } from './webhooks.js';
import type { WebhookEndpointStore } from './webhook-endpoints.js';

export interface EventIndexes {
  stats: Stats;
  history: MessageHistoryIndex;
  recipients: RecipientIndex;
}

/** `localStats` false: statistics are kept elsewhere (PostgreSQL, app/shared-state.ts), no deltas go into this log's batches. */
export function indexEvents(store: Store, events: EventLog, o: { localStats?: boolean } = {}): EventIndexes {
  const stats = new Stats(store, events);
  events.addIndexer(historyIndexer);
  if (o.localStats !== false) events.addIndexer(stats.indexer);
  const recipients = new RecipientIndex(store, events);
  return { stats, history: new MessageHistoryIndex(store, events), recipients };
}

export interface EventReaderOptions {
  store: Store;
  events: EventLog;
  indexes: EventIndexes;
  config: EventsConfig;
  accounts: readonly AccountConfig[];
  env: NodeJS.ProcessEnv;
  api: FastifyInstance;
  /** The delivery kill-switch the reputation brake engages. */
  killSwitch: AccountSwitch;
  log: Logger;
  /** The node's Prometheus registry (GET /metrics). */
  registry: Registry;
  /** Where the DataExporter reads (app/shared-state.ts); absent: this node's log. */
  feed?: FeedSource | undefined;
  /** Where the webhooks read (app/shared-state.ts); absent: this node's log. */
  webhookSource?: WebhookSource | undefined;
  /** Where API webhook endpoints are kept (app/shared-state.ts); absent: this node's LevelDB. */
  webhookEndpoints?: WebhookEndpointStore | undefined;
  /** The statistics the API, retention and brake use (app/shared-state.ts); absent: indexes.stats, this node's. */
  stats?: StatsCounters | undefined;
  /** Where the reputation brake keeps its records (app/shared-state.ts); absent: this node's LevelDB. */
  brakeRecords?: BrakeRecords | undefined;
}

export interface EventReaders {
  webhooks: WebhookDispatcher;
  retention: Retention;
  brake: ReputationBrake;
  close(): Promise<void>;
}

export async function startEventReaders(o: EventReaderOptions): Promise<EventReaders> {
  const { history } = o.indexes;
  const stats = o.stats ?? o.indexes.stats;
  const webhooks = new WebhookDispatcher({ source: o.webhookSource, endpoints: o.webhookEndpoints, store: o.store, events: o.events, config: o.config.webhooks, accounts: o.accounts, env: o.env, log: o.log });
  const metrics = new EventMetrics(o.registry, o.events, webhooks);
  registerEventRoutes(o.api, { events: o.events, feed: o.feed, history, onRead: metrics.onRead });
  registerStatsRoutes(o.api, stats);
  registerWebhookRoutes(o.api, webhooks, o.accounts.map((a) => a.id));
  const retention = new Retention({ store: o.store, events: o.events, stats, retentionDays: o.config.retentionDays, statsRetentionDays: o.config.statsRetentionDays, log: o.log });
  const folder = setInterval(() => void stats.fold().catch((err: unknown) => o.log.warn({ err }, 'statistics fold failed')), FOLD_INTERVAL_MS).unref();
  // Retention waits for the one-time recipient-index backfill (recipient-index.ts), which then owns the old events alone.
  const backfilled = o.indexes.recipients.backfill().then(
    (n) => void (n && o.log.info({ event: 'recipient-index-backfilled', events: n }, 'indexed the events written before the recipient index')),
    (err: unknown) => o.log.error({ err }, 'recipient index backfill failed; recipient searches scan the log until the next start'),
  );
  const prune = (): void => void backfilled.then(() => retention.prune()).catch((err: unknown) => o.log.warn({ err }, 'event retention failed'));
  prune();
  const pruner = setInterval(prune, o.config.pruneIntervalSeconds * 1000).unref();
  const brake = new ReputationBrake({ store: o.store, events: o.events, stats, killSwitch: o.killSwitch, config: o.config.brake, log: o.log, records: o.brakeRecords });
  registerBrakeRoutes(o.api, brake);
  await brake.start();
  await webhooks.start();
  return {
    webhooks,
    retention,
    brake,
    async close() {
      clearInterval(folder);
      clearInterval(pruner);
      await brake.stop();
      await o.indexes.recipients.stop();
      await webhooks.stop();
      await stats.fold().catch(() => undefined);
    },
  };
}
