/*
 * delivery.ts — the engine's delivery stage put together: relay pool, sending
 * IPs, back-pressure rules, kill-switch, the per-domain scheduler and the
 * worker that records each outcome; plus the status behind the API and metrics.
 *
 * Config: the `delivery` section and accounts[].delivery; engine.hostname is
 * the EHLO name. Side effects: SMTP connections, LevelDB writes.
 */
import type { AccountConfig, DeliveryConfig } from '../../common/config.js';
import type { AttemptLimit } from '../../common/dead-letter.js';
import type { DurableQueue } from '../../common/durable-queue.js';
import type { Logger } from '../../common/log.js';
import { RateMeter } from '../../common/rate-meter.js';
import type { Store } from '../../common/store.js';
import type { DeliveryMeta } from './delivery-record.js';
import type { EventLog } from '../events/event-log.js';
import type { SuppressionList } from '../suppression.js';
import { BackPressureRules } from './classify.js';
import { DeliveryWorker } from './delivery-worker.js';
import { DeliveryPause } from './delivery-pause.js';
import type { PauseStore } from './pause-store.js';
import { DeliveryMetrics } from './metrics.js';
import { deliveryStatus, type DeliveryStatus } from './queue-status.js';
import { RelayPool } from './relay-pool.js';
import { DeliveryScheduler } from './scheduler.js';
import { SourceAddresses } from './source-addresses.js';

export interface DeliveryOptions {
  config: DeliveryConfig;
  accounts: readonly AccountConfig[];
  hostname: string;
  store: Store;
  queue: DurableQueue<DeliveryMeta>;
  events: EventLog;
  suppression: SuppressionList;
  /** Longer than any single delivery transaction. */
  visibilityMs: number;
  /** Bounded attempts for a copy whose attempt throws (engine.maxAttempts). */
  attemptLimit?: AttemptLimit;
  /** engine.dsnDelayWarningSeconds in ms (DSNs to senders: dsn-notices.ts); 0 = no "delayed" notices. */
  dsnDelayWarningMs?: number;
  /** Where the kill-switch keeps its switches (app/shared-state.ts); absent: this node's LevelDB. */
  pauses?: PauseStore | undefined;
  log: Logger;
  clock?: () => number;
}

export interface Delivery {
  killSwitch: DeliveryPause;
  pool: RelayPool;
  scheduler: DeliveryScheduler;
  metrics: DeliveryMetrics;
  /** Account ids the pause routes and the dashboard know; live (setAccounts). */
  accounts: ReadonlySet<string>;
  /** After an accounts reload or API change (engine/accounts): new ids can be paused at once. */
  setAccounts(ids: Iterable<string>): void;
  status(): Promise<DeliveryStatus>;
  start(): void;
  stop(): Promise<void>;
}

export async function createDelivery(o: DeliveryOptions): Promise<Delivery> {
  const now = o.clock ?? Date.now;
  const c = o.config;
  const killSwitch = await DeliveryPause.open(o.store, o.pauses);
  const pool = new RelayPool(
    {
      relays: c.relays,
      probeScheduleSeconds: c.relayProbeScheduleSeconds,
      maxConnections: c.maxConnections,
      messagesPerConnection: c.messagesPerConnection,
      verifyCertificate: c.verifyCertificate,
      timeoutMs: c.timeoutSeconds * 1000,
      clientName: o.hostname,
      held: () => o.queue.size,
      clock: now,
    },
    o.log,
  );
  const rate = new RateMeter({ since: 'first-mark', now });
  const metrics = new DeliveryMetrics(() => pool.status());
  const outcomes: Record<string, number> = { delivered: 0, deferred: 0, bounced: 0, expired: 0, suppressed: 0, failed: 0, held: 0 };
  const worker = new DeliveryWorker({
    queue: o.queue,
    events: o.events,
    suppression: o.suppression,
    pool,
    sources: new SourceAddresses(c.sourceAddresses, o.accounts),
    rules: new BackPressureRules(c.backPressure),
    config: c,
    log: o.log,
    clock: now,
    ...(o.attemptLimit ? { attemptLimit: o.attemptLimit } : {}),
    dsn: { hostname: o.hostname, delayWarningMs: o.dsnDelayWarningMs ?? 0 },
    onOutcome(kind) {
      outcomes[kind] = (outcomes[kind] ?? 0) + 1;
      metrics.outcomes.inc({ outcome: kind });
      if (kind !== 'deferred') rate.mark();
    },
    onHeld() {
      outcomes.held = (outcomes.held ?? 0) + 1;
      metrics.outcomes.inc({ outcome: 'held' });
    },
  });
  const scheduler = new DeliveryScheduler({ queue: o.queue, config: c, killSwitch, relays: pool.health, visibilityMs: o.visibilityMs, handle: (r) => worker.handle(r), log: o.log, clock: now });
  const accountIds = new Set(o.accounts.map((a) => a.id));
  return {
    killSwitch,
    pool,
    scheduler,
    metrics,
    accounts: accountIds,
    setAccounts(ids) {
      accountIds.clear();
      for (const id of ids) accountIds.add(id);
    },
    status: () => deliveryStatus({ queue: o.queue, lanes: () => scheduler.lanesStatus(), relays: () => pool.status(), paused: () => killSwitch.state(), rate, outcomes, now }),
    start: () => scheduler.start(),
    async stop() {
      await scheduler.stop();
      pool.close();
    },
  };
}
