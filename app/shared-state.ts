/*
 * shared-state.ts — picks, once at start, where a hosted node keeps the state
 * every node must agree on (issue #14): without storage.postgres, the node's
 * own LevelDB (nothing to install); with it, PostgreSQL through one pool.
 * Today that is the suppression list, the account quotas, the forwarder's
 * spool ids (effectively-once across nodes), the event feed (each node ships
 * its own log to one global feed: engine/events/event-shipper.ts, and the
 * webhooks' outbox, taken over from a node that stays silent:
 * engine/events/webhook-outbox-postgres.ts), the statistics (folded from that feed: engine/events/stats-postgres.ts), the
 * recipient database (engine/recipient-db-postgres.ts), the delivery
 * kill-switch with the reputation brake's pauses (a pause through any node
 * holds on all within ~1 s: engine/delivery/pause-store-postgres.ts), the
 * reputation brake's records (one node decides each pause and resume, every
 * node judges by the same resume baseline:
 * engine/events/brake-records-postgres.ts), the dashboard's login
 * sessions (a cookie from one node is valid on all:
 * engine/dashboard/sessions-postgres.ts), the accounts API's changes (an SMTP
 * user, network, sender domain or quota set through any node holds on all
 * within ~1 s: engine/accounts/account-store-postgres.ts) and the webhook
 * endpoints added through the API (engine/events/webhook-endpoints-postgres.ts).
 * Account API keys need nothing here:
 * they live only in the config file (accounts[].apiKeys, the same file on
 * every node; common/api-keys.ts).
 *
 * At start with PostgreSQL: a database whose schema is older than this code
 * needs stops the node with a message naming `postino db migrate` (an upgrade
 * is stop, migrate, start). A database that does not answer does not stop it:
 * the node accepts mail into its local queue and every shared read defers
 * until PostgreSQL answers (engine/suppression-postgres.ts).
 *
 * Config: storage.postgres (common/config.ts).
 * Side effects: opens a connection pool (PostgreSQL only).
 */
import type { Config } from '../common/config.js';
import type { Logger } from '../common/log.js';
import { redactUrl, redactUrlsIn } from '../common/redact.js';
import type { Store } from '../common/store.js';
import { LevelSuppressionList, type SuppressionList } from '../engine/suppression.js';
import type { QuotaCounter, QuotaLimits } from '../listener/quota.js';
import type { EventLog } from '../engine/events/event-log.js';
import { localFeed, type FeedSource } from '../engine/events/feed-source.js';
import type { WebhookSource } from '../engine/events/webhooks.js';
import type { EraseJob } from '../engine/events/erase-recipient.js';
import { ensureNodeId } from '../common/node-id.js';
import { singleNode, type NodeFigures, type NodeRegistry } from '../engine/nodes/node-registry.js';
import { LevelRecipientDb, type RecipientDb } from '../engine/recipient-db.js';
import type { Pseudonymizer } from '../engine/recipients/pseudonym.js';
import type { PauseStore } from '../engine/delivery/pause-store.js';
import { MemorySessionStore, type DashboardSessions } from '../engine/dashboard/sessions.js';
import { LevelBrakeRecords, type BrakeRecords } from '../engine/events/brake-records.js';
import { LevelAccountStore, type AccountStore } from '../engine/accounts/account-store.js';
import { LevelWebhookEndpoints, type WebhookEndpointStore } from '../engine/events/webhook-endpoints.js';

/** How often a node drops the global feed's day partitions past events.retentionDays. */
const FEED_RETENTION_INTERVAL_MS = 3_600_000;
const DAY_MS = 86_400_000;

export interface EventFeed {
  source: FeedSource;
  /** Where this node's webhooks read (the global feed's numbering); absent: the node's log. */
  webhooks?: WebhookSource | undefined;
  /** A deleted recipient out of the global feed's copies (engine/recipients/erase.ts); absent: nothing beyond the log. */
  eraseRecipient?: ((job: EraseJob) => Promise<number>) | undefined;
  close(): Promise<void>;
}
import type { SharedSpoolIds } from '../common/spool-id-postgres.js';
import type { StatsCounters } from '../engine/events/stats.js';

export interface SharedState {
  backend: 'leveldb' | 'postgresql';
  suppression: SuppressionList;
  /** The listener's quota counter; undefined = its default, this node's LevelDB. */
  quotas: ((limits: QuotaLimits[], now: () => number) => QuotaCounter) | undefined;
  /** Where the DataExporter reads: this node's log, or the global feed this node ships its log to. */
  eventFeed(events: EventLog, retentionDays: number): Promise<EventFeed>;
  /** The nodes of this installation (this one alone on LevelDB; every node sharing the database). */
  nodes(figures: () => NodeFigures): Promise<NodeRegistry>;
  /** The statistics readers use: this node's counters (`local`), or the installation's in PostgreSQL. */
  stats(local: StatsCounters): Promise<StatsCounters>;
  /** Spool ids for every node; undefined = this node's own memory only. */
  spoolIds: SharedSpoolIds | undefined;
  /** The recipient database (merge fields, lists, counters, privacy deletions); closed by close(). */
  recipients(pseudonyms: Pseudonymizer): Promise<RecipientDb>;
  /** Where the delivery kill-switch keeps its switches; undefined = this node's LevelDB. */
  pauses: PauseStore | undefined;
  /** The dashboard's login sessions (idle limit in ms): this node's memory, or every node's. */
  sessions(idleMs: number): DashboardSessions;
  /** The reputation brake's records (paused/resumed, figures, resume baseline): this node's, or every node's. */
  brakeRecords(events: EventLog): Promise<BrakeRecords>;
  /** Where the accounts API keeps its changes (and their history); the node's log gets the events. */
  accounts(events: EventLog): Promise<AccountStore>;
  /** Where the endpoints added through the webhooks API are kept (closed by the dispatcher). */
  webhookEndpoints(): Promise<WebhookEndpointStore>;
  /** Forgets what expired (hourly, with the node's other sweeps). */
  sweep(): Promise<void>;
  /** Before the LevelDB store closes: parked writes still need it. */
  close(): Promise<void>;
}

export async function openSharedState(config: Config, store: Store, log: Logger): Promise<SharedState> {
  const pgConfig = config.storage.postgres;
  if (!pgConfig) {
    const suppression = new LevelSuppressionList(store);
    return {
      backend: 'leveldb',
      suppression,
      recipients: async (pseudonyms) => new LevelRecipientDb(store, pseudonyms),
      quotas: undefined,
      spoolIds: undefined,
      pauses: undefined,
      sessions: (idleMs) => new MemorySessionStore(idleMs),
      accounts: async (events) => new LevelAccountStore(store, events),
      webhookEndpoints: async () => new LevelWebhookEndpoints(store),
      sweep: async () => undefined,
      eventFeed: async (events) => ({ source: localFeed(events), close: async () => undefined }),
      nodes: async (figures) => singleNode(await ensureNodeId(store), figures),
      stats: async (local) => local,
      brakeRecords: async (events) => new LevelBrakeRecords(store, events),
      close: () => suppression.close(),
    };
  }
  // Loaded only when configured: a single node never loads the driver.
  const { openPool } = await import('../common/storage/postgres/pool.js');
  const { schemaVersion, SCHEMA_VERSION } = await import('../common/storage/postgres/migrations.js');
  const { PgSuppressionList } = await import('../engine/suppression-postgres.js');
  const { PgQuotas } = await import('../listener/quota-postgres.js');
  const { PgSpoolIds } = await import('../common/spool-id-postgres.js');
  const { PgPauseStore } = await import('../engine/delivery/pause-store-postgres.js');
  const { PgSessionStore } = await import('../engine/dashboard/sessions-postgres.js');
  const pool = openPool(pgConfig, log);
  const where = redactUrl(pgConfig.url);
  let version: number | undefined;
  try {
    version = await schemaVersion(pool);
  } catch (err) {
    log.warn({ event: 'postgres-unavailable', url: where, err: { message: redactUrlsIn((err as Error).message) } }, 'PostgreSQL does not answer: accepting mail, shared reads wait for it');
  }
  if (version !== undefined && version < SCHEMA_VERSION) {
    await pool.end();
    throw new Error(`${where}: shared-state schema at version ${version}, this postino needs ${SCHEMA_VERSION}: run \`postino db migrate --config <file>\` first`);
  }
  log.info({ event: 'shared-state', backend: 'postgresql', url: where, schema: version }, 'shared state in PostgreSQL');
  const suppression = new PgSuppressionList(pool, store, log.child({ component: 'suppression' }));
  let quotas: QuotaCounter | undefined;
  let recipients: RecipientDb | undefined;
  let sessions: InstanceType<typeof PgSessionStore> | undefined;
  let accounts: AccountStore & { close(): Promise<void> } | undefined;
  let webhookEndpoints: WebhookEndpointStore | undefined;
  const pauses = new PgPauseStore(pool, store, log.child({ component: 'delivery-pause' }));
  const spoolIds = new PgSpoolIds(pool, store, config.listener.spoolIdTtlSeconds * 1000, log.child({ component: 'spool-ids' }));
  // Ids accepted just before a crash that had not reached PostgreSQL yet (spool-id-postgres.ts).
  if (version !== undefined) {
    await spoolIds.reconcile().then(
      (n) => n > 0 && log.info({ event: 'spool-ids-reconciled', count: n }, 'recent spool ids written to PostgreSQL'),
      (err: unknown) => log.warn({ err: { message: redactUrlsIn((err as Error).message) } }, 'recent spool ids not reconciled'),
    );
  }
  return {
    backend: 'postgresql',
    suppression,
    quotas: (limits, now) => (quotas = new PgQuotas(pool, limits, now, log.child({ component: 'quota' }))),
    async recipients(pseudonyms) {
      const { PgRecipientDb } = await import('../engine/recipient-db-postgres.js');
      return (recipients = new PgRecipientDb(pool, store, await ensureNodeId(store), pseudonyms, log.child({ component: 'recipients' })));
    },
    async nodes(figures) {
      const { PgNodeRegistry } = await import('../engine/nodes/node-registry-postgres.js');
      return new PgNodeRegistry(pool, await ensureNodeId(store), figures, log.child({ component: 'nodes' }));
    },
    async stats() {
      const { PgStats } = await import('../engine/events/stats-postgres.js');
      return new PgStats(pool);
    },
    async eventFeed(events, retentionDays) {
      const { EventShipper } = await import('../engine/events/event-shipper.js');
      const { PgFeed } = await import('../engine/events/pg-feed.js');
      const node = await ensureNodeId(store);
      const flog = log.child({ component: 'event-feed' });
      const shipper = new EventShipper({ pool, events, node, log: flog });
      shipper.start();
      const prune = (): void =>
        void shipper.dropOlderThan(new Date(Date.now() - retentionDays * DAY_MS)).then(
          (n) => void (n && flog.info({ event: 'event-feed-pruned', partitions: n }, `dropped ${n} day partitions of the global feed`)),
          (err: unknown) => flog.warn({ err: { message: (err as Error).message } }, 'global feed retention failed'),
        );
      const pruner = setInterval(prune, FEED_RETENTION_INTERVAL_MS).unref();
      flog.info({ event: 'event-feed', node }, `events shipped to the global feed as node ${node}`);
      const feed = new PgFeed(pool);
      const { PgWebhookOutbox } = await import('../engine/events/webhook-outbox-postgres.js');
      // The webhooks' outbox is shared too: a node that stays dead has its events posted by another (webhooks.ts).
      const outbox = new PgWebhookOutbox(pool, node, feed, config.events.webhooks.takeoverSeconds * 1000);
      return {
        source: feed,
        webhooks: { top: () => feed.top(), scan: (after, top) => feed.scan(after, top, undefined, node), subscribe: (fn) => shipper.onShipped(fn), outbox },
        async eraseRecipient(job) {
          // This node's copies up to the deletion must be in the feed first: one shipped after the rewrite would bring the address back.
          await shipper.kick();
          if ((shipper.cursor ?? 0) < job.upTo) throw new Error(`events up to ${job.upTo} not shipped yet (at ${shipper.cursor ?? 'unknown'})`);
          return feed.eraseRecipient(job.account, job.address, job.pseudonym);
        },
        async close() {
          clearInterval(pruner);
          await shipper.kick(); // what the last batches added, while the pool is still open
          await shipper.stop();
        },
      };
    },
    spoolIds,
    pauses,
    async brakeRecords(events) {
      const { PgBrakeRecords } = await import('../engine/events/brake-records-postgres.js');
      return new PgBrakeRecords(pool, store, events, log.child({ component: 'reputation-brake' }));
    },
    sessions: (idleMs) => (sessions = new PgSessionStore(pool, idleMs)),
    async accounts(events) {
      const { PgAccountStore } = await import('../engine/accounts/account-store-postgres.js');
      return (accounts = new PgAccountStore(pool, store, events, log.child({ component: 'accounts' })));
    },
    async webhookEndpoints() {
      const { PgWebhookEndpoints } = await import('../engine/events/webhook-endpoints-postgres.js');
      return (webhookEndpoints = new PgWebhookEndpoints(pool, store, log.child({ component: 'webhooks' })));
    },
    async sweep() {
      await spoolIds.sweep();
      await sessions?.sweep();
    },
    async close() {
      await pauses.close();
      await accounts?.close();
      await webhookEndpoints?.close(); // the dispatcher closed it already; a node that failed before it did not
      await quotas?.close?.();
      await recipients?.close(); // parked traffic entries, while the pool is still open
      await spoolIds.close();
      await suppression.close();
      await pool.end();
    },
  };
}
