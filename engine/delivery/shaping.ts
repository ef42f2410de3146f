/*
 * shaping.ts — per-destination queue parameters (KumoMTA style) and the token
 * bucket that enforces a domain's message rate.
 *
 * A copy's destination is its recipient's domain, lower-cased. Parameters come
 * from `delivery.shaping.default`, overridden field by field by
 * `delivery.shaping.domains[<domain>]`. Overridden domains get their own
 * connection pools (so their `messagesPerConnection` applies); every other
 * domain shares the default pool, limited per domain by `maxConnections`.
 *
 * Config: delivery.shaping.default {maxConnections 20, messagesPerSecond 0 (no
 * limit), messagesPerConnection 100}, delivery.shaping.domains {}.
 * Side effects: none.
 */
import type { DeliveryConfig, ShapingParams } from '../../common/config.js';

export interface DomainShaping {
  /** Pool key: the override's domain, or "default". */
  poolKey: string;
  params: ShapingParams;
}

export function recipientDomain(address: string): string {
  const at = address.lastIndexOf('@');
  return (at === -1 ? '' : address.slice(at + 1)).toLowerCase();
}

export function shapingFor(cfg: DeliveryConfig['shaping'], domain: string): DomainShaping {
  const o = cfg.domains[domain];
  if (!o) return { poolKey: 'default', params: cfg.default };
  return { poolKey: domain, params: { ...cfg.default, ...o } };
}

/**
 * Tokens refill at `rate` per second up to `burst` (a tenth of a second's worth,
 * at least one message, so a 2 msg/s domain gets one message every 500 ms
 * rather than bursts). Rate 0 means unlimited.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private burst: number;

  constructor(
    private rate: number,
    now: number,
  ) {
    this.burst = Math.max(1, rate / 10);
    this.tokens = this.burst;
    this.last = now;
  }

  get perSecond(): number {
    return this.rate;
  }

  setRate(rate: number, now: number): void {
    this.refill(now);
    this.rate = rate;
    this.burst = Math.max(1, rate / 10);
    this.tokens = Math.min(this.tokens, this.burst);
  }

  private refill(now: number): void {
    if (this.rate > 0) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Takes one token: 0 when taken, else milliseconds until one is available (nothing taken). */
  take(now: number): number {
    if (this.rate <= 0) return 0;
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}
