/*
 * queue-status.ts — what the delivery queue holds, for `GET /api/queue`,
 * `postino hosted status` and `/metrics`: counts per state and per destination
 * domain, the oldest copy's age, and an estimated drain time from the rate at
 * which copies left the queue over the last minute.
 *
 * States: `ready` (in a lane, waiting for its domain's turn), `sending` (a
 * transaction in progress), `deferred` (waiting for a retry after a 4xx),
 * `queued` (on disk, due now or soon; includes copies waiting for room in
 * their lane and copies of paused accounts).
 * Side effects: reads the queue's records (a scan; fine at a few 100k copies).
 */
import { domainOf } from '../../common/address.js';
import type { DurableQueue } from '../../common/durable-queue.js';
import type { RateMeter } from '../../common/rate-meter.js';
import type { DeliveryMeta } from './delivery-record.js';
import type { DeliveryPauseState } from './delivery-pause.js';
import type { RelayStatus } from './relay-pool.js';
import type { LaneStatus } from './scheduler.js';

export interface DomainCount {
  domain: string;
  total: number;
  deferred: number;
  ready: number;
  sending: number;
}

export interface DeliveryStatus {
  total: number;
  states: { queued: number; ready: number; sending: number; deferred: number };
  oldestAgeSeconds: number;
  ratePerSecond: number;
  estimatedDrainSeconds: number | null;
  paused: DeliveryPauseState;
  domains: DomainCount[];
  lanes: LaneStatus[];
  relays: RelayStatus[];
  outcomes: Record<string, number>;
}

export interface DeliveryStatusSource {
  queue: DurableQueue<DeliveryMeta>;
  lanes(): LaneStatus[];
  relays(): RelayStatus[];
  paused(): DeliveryPauseState;
  rate: RateMeter;
  outcomes: Record<string, number>;
  now(): number;
}

export async function deliveryStatus(s: DeliveryStatusSource): Promise<DeliveryStatus> {
  const now = s.now();
  const states = { queued: 0, ready: 0, sending: 0, deferred: 0 };
  const lanes = s.lanes();
  const byDomain = new Map<string, DomainCount>();
  let total = 0;
  let oldest = Infinity;
  for await (const rec of s.queue.records()) {
    total++;
    oldest = Math.min(oldest, rec.enqueuedAt);
    const domain = domainOf(rec.meta.recipient);
    let d = byDomain.get(domain);
    if (!d) byDomain.set(domain, (d = { domain, total: 0, deferred: 0, ready: 0, sending: 0 }));
    d.total++;
    if (rec.leasedUntil === 0 && rec.meta.lastError) {
      states.deferred++;
      d.deferred++;
    }
  }
  // Leased copies are in a lane or being sent: the scheduler knows which.
  for (const l of lanes) {
    states.ready += l.ready;
    states.sending += l.inFlight;
    const d = byDomain.get(l.domain);
    if (d) {
      d.ready = l.ready;
      d.sending = l.inFlight;
    }
  }
  states.queued = Math.max(0, total - states.deferred - states.ready - states.sending);
  const rate = s.rate.perSecond();
  return {
    total,
    states,
    oldestAgeSeconds: oldest === Infinity ? 0 : Math.round((now - oldest) / 1000),
    ratePerSecond: Math.round(rate * 100) / 100,
    estimatedDrainSeconds: total === 0 ? 0 : rate > 0 ? Math.ceil(total / rate) : null,
    paused: s.paused(),
    domains: [...byDomain.values()].sort((a, b) => b.total - a.total),
    lanes: lanes.filter((l) => l.ready > 0 || l.inFlight > 0 || l.suspendedUntil || l.slowedUntil),
    relays: s.relays(),
    outcomes: { ...s.outcomes },
  };
}
