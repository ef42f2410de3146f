/*
 * metrics.ts — the delivery queue on `GET /metrics` (Prometheus text format,
 * prom-client), from the same status the API shows, computed once per scrape.
 *
 * Per-domain series are limited to the `MAX_DOMAIN_SERIES` largest domains,
 * so a queue with mail to 100,000 domains does not make 100,000 series.
 * Side effects: none (a registry of its own, not prom-client's global one).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { registerRelayGauges, type RelayHealthStatus } from '../../common/relay-health.js';
import type { DeliveryStatus } from './queue-status.js';

const MAX_DOMAIN_SERIES = 50;

export class DeliveryMetrics {
  readonly registry = new Registry();
  private readonly copies = new Gauge({ name: 'postino_delivery_queue_copies', help: 'Copies in the delivery queue by state', labelNames: ['state'], registers: [this.registry] });
  private readonly domains = new Gauge({ name: 'postino_delivery_queue_domain_copies', help: 'Copies in the delivery queue by destination domain (largest domains)', labelNames: ['domain'], registers: [this.registry] });
  private readonly oldest = new Gauge({ name: 'postino_delivery_oldest_age_seconds', help: 'Age of the oldest copy in the delivery queue', registers: [this.registry] });
  private readonly drain = new Gauge({ name: 'postino_delivery_estimated_drain_seconds', help: 'Queue size divided by the recent delivery rate (-1: no recent deliveries)', registers: [this.registry] });
  private readonly rate = new Gauge({ name: 'postino_delivery_rate_per_second', help: 'Copies finished per second over the last minute', registers: [this.registry] });
  private readonly paused = new Gauge({ name: 'postino_delivery_paused', help: '1 when delivery is paused (scope "*" = global, else the account)', labelNames: ['scope'], registers: [this.registry] });
  readonly outcomes = new Counter({ name: 'postino_delivery_outcomes_total', help: 'Copies by outcome', labelNames: ['outcome'], registers: [this.registry] });

  /** `relays`: each MTA relay's state, read at scrape time (up, down since, next probe, held). */
  constructor(relays: () => RelayHealthStatus[]) {
    registerRelayGauges(this.registry, 'postino_delivery', relays);
  }

  async render(s: DeliveryStatus): Promise<string> {
    for (const [state, n] of Object.entries(s.states)) this.copies.set({ state }, n);
    this.domains.reset();
    for (const d of s.domains.slice(0, MAX_DOMAIN_SERIES)) this.domains.set({ domain: d.domain }, d.total);
    this.oldest.set(s.oldestAgeSeconds);
    this.drain.set(s.estimatedDrainSeconds ?? -1);
    this.rate.set(s.ratePerSecond);
    this.paused.reset();
    this.paused.set({ scope: '*' }, s.paused.global ? 1 : 0);
    for (const a of s.paused.accounts) this.paused.set({ scope: a }, 1);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
