/*
 * shaping.ts — per-destination queue parameters (KumoMTA style); a domain's
 * message rate is enforced by its lane's token bucket (common/token-bucket.ts).
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

export function shapingFor(cfg: DeliveryConfig['shaping'], domain: string): DomainShaping {
  const o = cfg.domains[domain];
  if (!o) return { poolKey: 'default', params: cfg.default };
  return { poolKey: domain, params: { ...cfg.default, ...o } };
}
