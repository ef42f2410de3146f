/*
 * source-addresses.ts — which local IP a copy is sent from (nodemailer's
 * `localAddress`), per account and stream, chosen by weight.
 *
 * An account with `accounts[].delivery.sourceAddresses` sends only from those
 * (reserved IPs, "Brand Shield"); every other account uses the shared pool
 * `delivery.sourceAddresses`, which config validation keeps free of reserved
 * addresses. An entry may be limited to one stream (`streams`). No matching
 * entry: the OS chooses (undefined).
 *
 * Config: delivery.sourceAddresses ([]), accounts[].delivery.sourceAddresses ([]).
 * Side effects: none.
 */
import type { AccountConfig, SourceAddressConfig, Stream } from '../../common/config.js';

type Weighted = { address: string; weight: number; current: number };

export class SourceAddresses {
  private readonly reserved = new Map<string, SourceAddressConfig[]>();
  private readonly rr = new Map<string, Weighted[]>();

  constructor(
    private readonly shared: readonly SourceAddressConfig[],
    accounts: readonly AccountConfig[],
  ) {
    for (const a of accounts) if (a.delivery.sourceAddresses.length) this.reserved.set(a.id, [...a.delivery.sourceAddresses]);
  }

  /** Smooth weighted round-robin, so two IPs of weight 1 alternate exactly. */
  pick(account: string, stream: Stream): string | undefined {
    const key = `${this.reserved.has(account) ? account : '*'}|${stream}`;
    let list = this.rr.get(key);
    if (!list) {
      const src = this.reserved.get(account) ?? this.shared;
      list = src.filter((s) => s.streams.includes(stream)).map((s) => ({ address: s.address, weight: s.weight, current: 0 }));
      this.rr.set(key, list);
    }
    if (list.length === 0) return undefined;
    let total = 0;
    let best = list[0]!;
    for (const w of list) {
      w.current += w.weight;
      total += w.weight;
      if (w.current > best.current) best = w;
    }
    best.current -= total;
    return best.address;
  }
}
