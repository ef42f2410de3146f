/*
 * context.ts — what the dashboard's pages are given by the composition root:
 * the hosted node's parts they read (event log, queues, delivery, suppression
 * list, capture folder) and the dashboard's own state (sessions, settings).
 */
import type { ApiKeys } from '../../common/api-keys.js';
import type { AccountConfig, DashboardConfig } from '../../common/config.js';
import type { DurableQueue } from '../../common/durable-queue.js';
import type { IntakeMeta } from '../../common/intake-record.js';
import type { Delivery } from '../delivery/delivery.js';
import type { DeliveryMeta } from '../delivery/delivery-record.js';
import type { EventLog } from '../events/event-log.js';
import type { StatsCounters } from '../events/stats.js';
import type { WebhookDispatcher } from '../events/webhooks.js';
import type { ReputationBrake } from '../events/reputation-brake.js';
import type { NodeRegistry } from '../nodes/node-registry.js';
import type { SuppressionStore } from '../suppression-routes.js';
import type { MessageArchive } from '../archive/message-archive.js';
import type { ForwarderLog } from '../forwarders/forwarder-log.js';
import type { CaptureFolder } from './capture-folder.js';
import type { DashboardSessions } from './sessions.js';

export interface DashboardContext {
  config: DashboardConfig;
  /** Cookies carry `Secure` (and the `__Host-` prefix): engine.publicUrl is https. */
  secureCookies: boolean;
  accounts: readonly AccountConfig[];
  apiKeys: ApiKeys;
  events: EventLog;
  intake: DurableQueue<IntakeMeta>;
  /** The queue Delivery.status() scans; read here for one account's share. */
  deliveryQueue: DurableQueue<DeliveryMeta>;
  delivery: Delivery;
  suppressions: SuppressionStore;
  /** The capture sink's folder when it exists (the sink is the MTA cluster), else undefined. */
  capture: CaptureFolder | undefined;
  sessions: DashboardSessions;
  /** The message archive (engine.archive); undefined: message pages say the source is not archived. */
  archive?: MessageArchive | undefined;
  /** The forwarders and applications seen by this node (the overview lists them). */
  forwarders?: ForwarderLog | undefined;
  /** The statistics counters (events/stats.ts); absent in apps built without the event indexes (the page says so). */
  stats?: StatsCounters | undefined;
  /** The webhook dispatcher (events/webhooks.ts), read at request time: the node starts it after registering the pages. */
  webhooks?: WebhookDispatcher | undefined;
  /** The reputation brake (events/reputation-brake.ts), read at request time like the webhooks; absent: no brake card. */
  brake?: ReputationBrake | undefined;
  /** The installation's nodes (engine/nodes/); absent: no nodes card. */
  nodes?: NodeRegistry | undefined;
}
