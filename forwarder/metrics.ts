/*
 * metrics.ts — the forwarder's counters, its recent relay rate, and their
 * Prometheus exposition (prom-client, text format 0.0.4) for GET /metrics.
 *
 * Counters are per process (they restart at zero, as Prometheus expects of a
 * counter); queue gauges are read from the spool at scrape time, and the
 * listeners' state (up, down since, next probe, held) from the relay client.
 * The relay rate over the last minute (common/rate-meter.ts) gives /status its
 * "estimated seconds to drain".
 * Side effects: none (a private registry, no timers).
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { RateMeter } from '../common/rate-meter.js';
import { registerRelayGauges, type RelayHealthStatus } from '../common/relay-health.js';

export interface QueueGauges {
  queued: number;
  inFlight: number;
  deferred: number;
  paused: boolean;
  intakePaused: boolean;
  oldestAgeSeconds: number;
  diskBytes: number;
}

export class ForwarderMetrics {
  readonly registry = new Registry();
  readonly accepted: Counter;
  readonly acceptedBytes: Counter;
  readonly relayed: Counter;
  readonly deferred: Counter;
  readonly failedRecipients: Counter;
  readonly dsns: Counter;
  readonly adminDeleted: Counter;
  readonly held: Counter;
  /** forwarder/intake-first.ts: 1 while the relay steps back for intake, and the seconds it did. */
  readonly relayYielding: Gauge;
  readonly relayYieldSeconds: Counter;
  /** Relays per second over the last minute, averaged since start until a minute has passed. */
  private readonly relays: RateMeter;

  constructor(gauges: () => Promise<QueueGauges>, relayStates: () => RelayHealthStatus[], nowMs: () => number = Date.now) {
    this.relays = new RateMeter({ since: 'start', now: nowMs });
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'postino_forwarder_' });
    this.accepted = new Counter({ name: 'postino_forwarder_accepted_total', help: 'Messages accepted from apps and synced to the spool', registers: [r] });
    this.acceptedBytes = new Counter({ name: 'postino_forwarder_accepted_bytes_total', help: 'Bytes of accepted messages', registers: [r] });
    this.relayed = new Counter({ name: 'postino_forwarder_relayed_total', help: 'Messages the hosted listener accepted (all recipients settled)', registers: [r] });
    this.deferred = new Counter({ name: 'postino_forwarder_deferred_total', help: 'Relay attempts that ended in a retry', registers: [r] });
    this.failedRecipients = new Counter({ name: 'postino_forwarder_failed_recipients_total', help: 'Recipients refused for good (5xx) or expired', registers: [r] });
    this.dsns = new Counter({ name: 'postino_forwarder_dsn_total', help: 'Delivery status notifications queued for senders', registers: [r] });
    this.held = new Counter({ name: 'postino_forwarder_held_total', help: 'Messages given back without an attempt counted because no listener was reachable', registers: [r] });
    this.relayYielding = new Gauge({ name: 'postino_forwarder_relay_yielding', help: '1 while apps saturate the event loop and the relay trickles (~100 msgs/s, forwarder/intake-first.ts; relay.yieldToIntakeSeconds)', registers: [r] });
    this.relayYieldSeconds = new Counter({ name: 'postino_forwarder_relay_yield_seconds_total', help: 'Seconds the relay stepped back for intake', registers: [r] });
    registerRelayGauges(r, 'postino_forwarder', relayStates);
    this.adminDeleted = new Counter({ name: 'postino_forwarder_spool_removed_by_admin_total', help: 'Messages deleted through the admin API', registers: [r] });
    let last: QueueGauges | undefined;
    const gauge = (name: string, help: string, pick: (g: QueueGauges) => number): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        async collect() {
          // One spool scan per scrape, shared by every gauge of that scrape.
          if (name === 'postino_forwarder_queued') last = await gauges();
          if (last) this.set(pick(last));
        },
      });
    };
    gauge('postino_forwarder_queued', 'Messages in the spool (waiting, deferred or in flight)', (g) => g.queued);
    gauge('postino_forwarder_in_flight', 'Messages being relayed now', (g) => g.inFlight);
    gauge('postino_forwarder_deferred', 'Messages waiting for a retry after a failed attempt', (g) => g.deferred);
    gauge('postino_forwarder_paused', '1 while the kill-switch holds relaying', (g) => (g.paused ? 1 : 0));
    gauge('postino_forwarder_intake_paused', '1 while the kill-switch also refuses new mail', (g) => (g.intakePaused ? 1 : 0));
    gauge('postino_forwarder_oldest_age_seconds', 'Age of the oldest spooled message', (g) => g.oldestAgeSeconds);
    gauge('postino_forwarder_spool_disk_bytes', 'Bytes on disk under the spool folder', (g) => g.diskBytes);
  }

  /** A message left the spool because the next hop took it. */
  markRelayed(): void {
    this.relays.mark();
    this.relayed.inc();
  }

  /** Messages relayed per second, averaged over the last minute. */
  relayRate(): number {
    return this.relays.perSecond();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
