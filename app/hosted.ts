/*
 * hosted.ts — one hosted node: listener + engine (rewrap, delivery, feedback) + HTTP.
 *
 * Data: <data>/hosted/{db,blobs,reports,archive}; the intake, delivery and feedback
 * queues share one LevelDB so each move is one atomic batch.
 * Shutdown order: stop the SMTP intakes (listener, bounce intake), stop
 * rewrap and the report worker, stop delivery (sends in progress finish),
 * close HTTP, close LevelDB.
 * Signals: SIGHUP re-reads the listener's TLS pair, the token key ring and the
 * config file's accounts (engine/accounts/account-service.ts; POST /api/reload too).
 * Accounts: one AccountsSnapshot (file + accounts API overlays) read by the
 * listener, the rewrap settings and the API keys, swapped on every change.
 */
import path from 'node:path';
import { ApiKeys } from '../common/api-keys.js';
import { DurableQueue, type QueueRecord } from '../common/durable-queue.js';
import { listenHttp } from '../common/http-server.js';
import type { IntakeMeta } from '../common/intake-record.js';
import type { Component, Runtime } from '../common/runtime.js';
import { ensureSecret, resolveSecret } from '../common/secrets.js';
import { Store } from '../common/store.js';
import { DeadLetter, joinPrepared, type AttemptLimit, type PreparedOps } from '../common/dead-letter.js';
import { noticeOps } from '../engine/delivery/dsn-notices.js';
import type { EventInput } from '../common/events.js';
import { WorkerLoop } from '../common/worker-loop.js';
import { failedCounts, registerFailedRoutes, type FailedQueues } from '../engine/failed-routes.js';
import { startListener } from '../listener/listener.js';
import { SeenSpoolIds } from '../common/spool-id.js';
import { createDelivery, type Delivery } from '../engine/delivery/delivery.js';
import { registerDeliveryRoutes } from '../engine/delivery/http-routes.js';
import { EventLog } from '../engine/events/event-log.js';
import { indexEvents, startEventReaders } from '../engine/events/events-stage.js';
import { createHostedApi } from '../engine/http-api.js';
import type { DeliveryMeta } from '../engine/delivery/delivery-record.js';
import type { RecipientDb } from '../engine/recipient-db.js';
import { RecipientEraser } from '../engine/recipients/erase.js';
import { RecipientProjection } from '../engine/recipients/projection.js';
import { Pseudonymizer } from '../engine/recipients/pseudonym.js';
import { registerRecipientRoutes } from '../engine/recipients/routes.js';
import { resolveRewrapSettings } from '../engine/rewrap/settings.js';
import { RewrapWorker } from '../engine/rewrap/worker.js';
import type { BodySource } from '../engine/rewrap/body-source.js';
import type { SuppressionList } from '../engine/suppression.js';
import { openSharedState } from './shared-state.js';
import { CopyIndex } from '../engine/feedback/copy-index.js';
import { secretsFingerprint } from '../common/secrets-fingerprint.js';
import { FileKeyRing } from '../common/signing-keys.js';
import { feedbackAddressBook, startBounceIntake, type FeedbackMeta } from '../engine/feedback/bounce-intake.js';
import { registerFeedbackRoutes } from '../engine/feedback/http-routes.js';
import { registerSuppressionRoutes } from '../engine/suppression-routes.js';
import { Notifier } from '../engine/feedback/notifications.js';
import { FeedbackRecorder } from '../engine/feedback/recorder.js';
import { ReportWorker } from '../engine/feedback/report-worker.js';
import { sweepOrphanBlobs } from '../common/orphan-blobs.js';
import { CaptureFolder } from '../engine/dashboard/capture-folder.js';
import { registerDashboard } from '../engine/dashboard/dashboard.js';
import { cookiesSecure } from '../engine/dashboard/login.js';
import { AccountsSnapshot } from '../common/accounts-snapshot.js';
import { AccountService } from '../engine/accounts/account-service.js';
import { registerAccountRoutes } from '../engine/accounts/routes.js';
import { archivePolicy, MessageArchive } from '../engine/archive/message-archive.js';
import { pruneArchive } from '../engine/archive/archive-retention.js';
import { ForwarderLog } from '../engine/forwarders/forwarder-log.js';

/** Longer than any single rewrap or delivery transaction. */
const VISIBILITY_MS = 10 * 60_000;
/** Expired forwarder spool ids and copy records past feedback.copyRetentionDays are forgotten this often. */
const SPOOL_ID_SWEEP_MS = 60 * 60_000;
const DAY_MS = 86_400_000;
/** Reports are parsed on the thread that also serves SMTP and HTTP: a few at a time is plenty. */
const REPORT_CONCURRENCY = 2;

export interface Hosted extends Component {
  smtpPort: number;
  /** The bounce intake's port; undefined when feedback.port is null. */
  bouncePort: number | undefined;
  httpPort: number;
  intake: DurableQueue<IntakeMeta>;
  delivery: DurableQueue<DeliveryMeta>;
  events: EventLog;
  suppression: SuppressionList;
  recipients: RecipientDb;
  deliveryStage: Delivery;
}

/** Events for common/dead-letter.ts, written through the event log. */
function eventOps(events: EventLog, inputs: EventInput[]): PreparedOps {
  const ev = events.prepare(inputs);
  return { ops: ev.ops, settle: () => events.settle(ev), abandon: () => events.abandon(ev) };
}

export async function startHosted(rt: Runtime): Promise<Hosted> {
  const { config, log } = rt;
  const apiKey = resolveSecret(rt.dataDir, 'api-key', config.http.apiKeyEnv, rt.env);
  // One key ring for the tokens the rewrap writes and the feedback routes read.
  const keys = FileKeyRing.open(rt.dataDir);
  const store = await Store.open(path.join(rt.dataDir, 'hosted'), { log });
  const intake = await DurableQueue.open<IntakeMeta>(store, 'intake');
  const delivery = await DurableQueue.open<DeliveryMeta>(store, 'delivery');
  const events = await EventLog.open(store);
  // Before any writer prepares an event. With storage.postgres the statistics are the installation's, folded from the global feed.
  const eventIndexes = indexEvents(store, events, { localStats: !config.storage.postgres });
  // LevelDB or PostgreSQL (storage.postgres), chosen once here (shared-state.ts).
  const shared = await openSharedState(config, store, log);
  // Before anything reads accounts: the accounts API's changes are laid over the file's.
  const accountsNow = new AccountsSnapshot(config.accounts);
  const accountService = await AccountService.open({ config, store: await shared.accounts(events), snapshot: accountsNow, reloadConfig: rt.reloadConfig, log: log.child({ component: 'accounts' }) });
  // The rewrap reads this map per message: refilled in place when the accounts change (the
  // node-wide engine settings stay those of the start; a reload names them as needing a restart).
  const rewrapSettings = resolveRewrapSettings({ ...config, accounts: accountsNow.current }, rt.dataDir, keys);
  accountsNow.onSwap((list) => {
    try {
      const next = resolveRewrapSettings({ ...config, accounts: list }, rt.dataDir, keys);
      rewrapSettings.clear();
      for (const [id, s] of next) rewrapSettings.set(id, s);
    } catch (err) {
      log.error({ err }, 'rewrap settings not updated (a DKIM key file?); the previous ones stay');
    }
  });
  const suppression = shared.suppression;
  const stats = await shared.stats(eventIndexes.stats);

  const pseudonyms = new Pseudonymizer(ensureSecret(rt.dataDir, 'pseudonym-key'));
  const recipients = await shared.recipients(pseudonyms);
  const recipientCounters = new RecipientProjection({ store, events, db: recipients, log: log.child({ component: 'recipients' }) });
  const eraser = new RecipientEraser({
    store,
    events,
    db: recipients,
    suppression,
    pseudonyms,
    log: log.child({ component: 'recipients' }),
    // The global feed opens further down; the eraser runs its jobs only from eraser.start(), after it.
    eraseFromFeed: shared.backend === 'postgresql' ? (job) => eventFeed.eraseRecipient!(job) : undefined,
  });
  const copies = new CopyIndex(store);
  const feedbackQueue = await DurableQueue.open<FeedbackMeta>(store, 'feedback');
  // Blob files a crash left unreferenced, before any intake or worker writes one.
  const orphans = await sweepOrphanBlobs(store, [intake, delivery, feedbackQueue]);
  if (orphans.length > 0) log.warn({ event: 'orphan-blobs-removed', count: orphans.length, files: orphans.slice(0, 20) }, 'removed blob files no queue record references');
  const recorder = new FeedbackRecorder({ store, events, suppression, copies, config: config.feedback, log: log.child({ component: 'feedback' }) });
  const reports = new ReportWorker({ queue: feedbackQueue, recorder, copies, keys, book: feedbackAddressBook(config), reportsDir: path.join(rt.dataDir, 'hosted', 'reports'), log: log.child({ component: 'feedback' }) });
  // A handler that keeps throwing (a poison message) ends in the failed records, never retried forever.
  const attemptLimit: AttemptLimit = { maxAttempts: config.engine.maxAttempts, backoffMs: config.engine.crashRetrySeconds.map((s) => s * 1000) };
  const reportDead = new DeadLetter<FeedbackMeta>({ queue: feedbackQueue, limit: attemptLimit, countLeases: true, failedEvents: (r, why) => eventOps(events, reports.failedEvents(r, why)), log });
  const reportLoop = new WorkerLoop<FeedbackMeta>({ queue: feedbackQueue, concurrency: REPORT_CONCURRENCY, visibilityMs: VISIBILITY_MS, handle: (r) => reports.handle(r), log, deadLetter: reportDead });
  // The message archive (engine.archive, per account) and the forwarder figures, both fed as the rewrap takes a message up.
  const archive = new MessageArchive(path.join(rt.dataDir, 'hosted', 'archive'), (id) => archivePolicy(config.engine.archive, accountsNow.current.find((a) => a.id === id)), store, { log: log.child({ component: 'archive' }) });
  const forwarders = await ForwarderLog.open(store, log.child({ component: 'forwarders' }));
  const onIntake = async (rec: QueueRecord<IntakeMeta>, o: { messageId: string | undefined; source: BodySource }): Promise<void> => {
    const { envelope, account } = rec.meta;
    forwarders.note({ address: envelope.clientAddress, account, queueId: rec.id, messageId: o.messageId, sender: envelope.mailFrom, forwarded: Boolean(rec.meta.forwarded) });
    await archive.keep({ id: rec.id, account, file: rec.body.kind === 'file' ? intake.store.blobPath(rec.body.name) : undefined, read: () => o.source.read(0, o.source.size) });
  };
  const pruneArchived = (): void => void pruneArchive(archive, Date.now(), log).catch((err: unknown) => log.warn({ err }, 'archive retention pass failed'));
  pruneArchived();
  const archivePruner = setInterval(pruneArchived, config.events.pruneIntervalSeconds * 1000).unref();
  const rewrap = new RewrapWorker({ intake, delivery, events, services: { suppression, recipients, copies }, settings: rewrapSettings, log: log.child({ component: 'engine' }), onIntake });
  const rewrapDead = new DeadLetter<IntakeMeta>({
    queue: intake,
    limit: attemptLimit,
    countLeases: true,
    // The failed events, and the sender's DSN for the recipients without a copy, in the one batch.
    failedEvents: async (r, why) => joinPrepared(eventOps(events, rewrap.failedEvents(r, why)), noticeOps(delivery, await rewrap.failedNotice(r, why))),
    log,
  });
  const rewrapLoop = new WorkerLoop<IntakeMeta>({ queue: intake, concurrency: config.engine.concurrency, visibilityMs: VISIBILITY_MS, handle: (r) => rewrap.handle(r), log, deadLetter: rewrapDead });

  const deliveryStage = await createDelivery({
    config: config.delivery,
    accounts: accountsNow.current,
    hostname: config.engine.hostname,
    store,
    queue: delivery,
    events,
    suppression,
    visibilityMs: VISIBILITY_MS,
    attemptLimit,
    dsnDelayWarningMs: config.engine.dsnDelayWarningSeconds * 1000,
    pauses: shared.pauses,
    log: log.child({ component: 'delivery' }),
  });

  // Effectively-once hop from the forwarders (common/spool-id.ts).
  const spoolIds = new SeenSpoolIds(store, config.listener.spoolIdTtlSeconds * 1000);
  const sweep = (): void => {
    spoolIds.sweep().catch((err: unknown) => log.warn({ err }, 'spool id sweep failed'));
    shared.sweep().catch((err: unknown) => log.warn({ err }, 'shared-state sweep failed'));
    copies.sweep(Date.now() - config.feedback.copyRetentionDays * DAY_MS).catch((err: unknown) => log.warn({ err }, 'copy index sweep failed'));
  };
  sweep();
  const sweeper = setInterval(sweep, SPOOL_ID_SWEEP_MS).unref();
  const listener = await startListener({ config: config.listener, accounts: accountsNow, dataDir: rt.dataDir, queue: intake, log: log.child({ component: 'listener' }), spoolIds, controlLimits: { maxScheduleDays: config.engine.maxScheduleDays }, quotas: shared.quotas, sharedSpoolIds: shared.spoolIds });
  // SIGHUP: re-read the listener's certificate (renewal) without dropping sessions.
  const onHup = (): void => {
    keys.reload();
    void listener.reloadTls().catch((err: unknown) => log.error({ err }, 'TLS reload failed; keeping the old certificate'));
    // Logs what it applied, or every problem with its key path while the old accounts stay.
    void accountService.reload().catch((err: unknown) => log.error({ err }, 'config reload failed'));
  };
  const bounceIntake = config.feedback.port === null ? undefined : await startBounceIntake({ config, queue: feedbackQueue, copies, keys, log: log.child({ component: 'bounce-intake' }) });
  process.on('SIGHUP', onHup);
  const apiKeys = new ApiKeys(apiKey, accountsNow.current);
  // Only when the keys changed: setAccounts forgets verified keys, and each costs a scrypt again.
  const keysOf = (list: typeof accountsNow.current): string => JSON.stringify(list.map((a) => [a.id, a.apiKeys]));
  let keysNow = keysOf(accountsNow.current);
  accountsNow.onSwap((list) => {
    if (keysOf(list) === keysNow) return;
    keysNow = keysOf(list);
    apiKeys.setAccounts(list);
  });
  const api = createHostedApi((t) => apiKeys.principal(t), log);
  const failedQueues = [intake, delivery, feedbackQueue] as FailedQueues;
  const nodes = await shared.nodes(() => {
    const paused = deliveryStage.killSwitch.state();
    return {
      intake: intake.size,
      queued: delivery.size,
      failed: Object.values(failedCounts(failedQueues)).reduce((a, n) => a + n, 0),
      pausedGlobal: paused.global,
      pausedAccounts: paused.accounts.length,
      secrets: secretsFingerprint(rt.dataDir),
    };
  });
  registerDeliveryRoutes(api, intake, deliveryStage, () => failedCounts(failedQueues), () => nodes.list());
  registerFailedRoutes(api, failedQueues, deliveryStage.metrics.registry);
  registerFeedbackRoutes(api, { keys, recorder, log });
  accountsNow.onSwap((list) => deliveryStage.setAccounts(list.map((a) => a.id)));
  registerSuppressionRoutes(api, { store, suppression, accounts: deliveryStage.accounts });
  registerAccountRoutes(api, accountService);
  if (config.dashboard.enabled) {
    const captureDir = config.dashboard.captureDir ?? config.sink.dir ?? path.join(rt.dataDir, 'sink');
    const ctx = {
      config: config.dashboard,
      secureCookies: cookiesSecure(config.engine.publicUrl),
      // Live: a password or key changed through the accounts API counts at the next login.
      get accounts() {
        return accountsNow.current;
      },
      apiKeys,
      events,
      intake,
      deliveryQueue: delivery,
      delivery: deliveryStage,
      suppressions: { store, suppression },
      capture: CaptureFolder.open(captureDir),
      sessions: shared.sessions(config.dashboard.sessionIdleMinutes * 60_000),
      archive,
      forwarders,
      stats,
      // Started below (startEventReaders), after the pages are registered; read only while serving a request.
      get webhooks() {
        return eventReaders.webhooks;
      },
      get brake() {
        return eventReaders.brake;
      },
      nodes,
    };
    registerDashboard(api, ctx, log.child({ component: 'dashboard' }));
  }
  registerRecipientRoutes(api, { store, db: recipients, suppression, eraser, accounts: deliveryStage.accounts });
  // Webhook endpoints from the file are read here, at start (a reload names them as needing a restart).
  const eventFeed = await shared.eventFeed(events, config.events.retentionDays);
  const brakeRecords = await shared.brakeRecords(events);
  const eventReaders = await startEventReaders({ brakeRecords, stats, feed: eventFeed.source, webhookSource: eventFeed.webhooks, webhookEndpoints: await shared.webhookEndpoints(), store, events, indexes: eventIndexes, config: config.events, accounts: accountsNow.current, env: rt.env, api, killSwitch: deliveryStage.killSwitch, registry: deliveryStage.metrics.registry, log: log.child({ component: 'events' }) });
  const httpPort = await listenHttp(api, { host: config.http.host, port: config.http.port, what: 'hosted', log });
  const notifier = new Notifier({ store, events, delivery, accounts: accountsNow.current, hostname: config.engine.hostname, log: log.child({ component: 'notify' }) });
  await recipientCounters.start();
  eraser.start();
  forwarders.start();
  rewrapLoop.start();
  reportLoop.start();
  notifier.start();
  deliveryStage.start();

  return {
    smtpPort: listener.port,
    bouncePort: bounceIntake?.port,
    httpPort,
    intake,
    delivery,
    events,
    suppression,
    recipients,
    deliveryStage,
    async close() {
      clearInterval(sweeper);
      clearInterval(archivePruner);
      process.off('SIGHUP', onHup);
      await listener.close();
      await bounceIntake?.close();
      await rewrapLoop.stop();
      await archive.close(); // its last records written and indexed before the store closes
      await forwarders.stop();
      await reportLoop.stop();
      await notifier.stop();
      await deliveryStage.stop();
      await recipientCounters.stop();
      await eraser.stop();
      await eventReaders.close();
      await nodes.stop();
      await api.close();
      // Ships what the last batches added before the pool closes (a stopped node's events wait for its restart otherwise).
      await eventFeed.close();
      await shared.close();
      await store.close();
    },
  };
}
