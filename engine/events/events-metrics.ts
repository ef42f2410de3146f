/*
 * events-metrics.ts — Prometheus series of the event log and its readers, on
 * the node's registry (GET /metrics, node key):
 *   postino_events_total{type,account}           events committed since start
 *   postino_event_log_events                     events kept (last seq − first kept seq + 1, gaps included)
 *   postino_event_log_last_seq                   the watermark
 *   postino_webhook_backlog_seqs{account,webhook} seqs between an endpoint's cursor and the watermark
 *   postino_webhook_pending_events{account,webhook} events in its unacknowledged batch
 *   postino_webhook_failures_total{account}      failed POSTs since start
 *   postino_webhook_disabled{account,webhook}    1 when disabled after failing too long
 *   postino_feed_reader_lag_seqs{account}        watermark − the last seq a feed response of that scope reached
 * Side effects: none (gauges are computed at scrape time).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { EventLog } from './event-log.js';
import type { WebhookDispatcher } from './webhooks.js';

export class EventMetrics {
  /** Last seq each feed scope ('*' = node key, all accounts) read up to. */
  private readonly readers = new Map<string, number>();

  constructor(registry: Registry, events: EventLog, webhooks: WebhookDispatcher) {
    const total = new Counter({ name: 'postino_events_total', help: 'Events committed to the event log since start', labelNames: ['type', 'account'], registers: [registry] });
    events.subscribe((batch) => {
      for (const e of batch) total.inc({ type: e.type, account: e.account || 'none' });
    });
    new Gauge({
      name: 'postino_event_log_events',
      help: 'Events kept in the event log (seq range, abandoned seqs included)',
      registers: [registry],
      async collect() {
        const first = await events.firstSeq();
        this.set(first === undefined ? 0 : Math.max(0, events.watermark - first + 1));
      },
    });
    new Gauge({
      name: 'postino_event_log_last_seq',
      help: 'Highest seq readers may see',
      registers: [registry],
      collect() {
        this.set(events.watermark);
      },
    });
    new Gauge({
      name: 'postino_webhook_backlog_seqs',
      help: "Seqs between a webhook endpoint's cursor and the end of the log",
      labelNames: ['account', 'webhook'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of webhooks.list(undefined)) this.set({ account: w.account, webhook: w.id }, w.lag);
      },
    });
    new Gauge({
      name: 'postino_webhook_pending_events',
      help: 'Events in the unacknowledged batch of a webhook endpoint',
      labelNames: ['account', 'webhook'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of webhooks.list(undefined)) this.set({ account: w.account, webhook: w.id }, w.pending?.events ?? 0);
      },
    });
    new Gauge({
      name: 'postino_webhook_disabled',
      help: 'A webhook endpoint disabled after failing for events.webhooks.disableAfterHours',
      labelNames: ['account', 'webhook'],
      registers: [registry],
      collect() {
        this.reset();
        for (const w of webhooks.list(undefined)) this.set({ account: w.account, webhook: w.id }, w.disabled ? 1 : 0);
      },
    });
    new Counter({
      name: 'postino_webhook_failures_total',
      help: 'Failed webhook POSTs since start',
      labelNames: ['account'],
      registers: [registry],
      collect() {
        // The dispatcher counts; the counter mirrors it at scrape time.
        this.reset();
        for (const [account, n] of webhooks.failures) this.inc({ account }, n);
      },
    });
    const readers = this.readers;
    new Gauge({
      name: 'postino_feed_reader_lag_seqs',
      help: 'Seqs between the end of the log and where the last feed response of this scope ended',
      labelNames: ['account'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [account, seq] of readers) this.set({ account }, Math.max(0, events.watermark - seq));
      },
    });
  }

  /** EventRouteDeps.onRead: a feed response of this scope reached `seq`. */
  readonly onRead = (account: string | undefined, seq: number): void => {
    this.readers.set(account ?? '*', seq);
  };
}
