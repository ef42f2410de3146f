/*
 * suppression.ts — who must never receive mail again (DESIGN.md guarantee 4).
 *
 * Keys `s!<account>!<scope>!<address>` in the hosted LevelDB, where scope is
 * `*` (account-wide) or `list:<name>` (a list-scoped unsubscribe). Addresses
 * are stored with the domain lower-cased and the local part as given: RFC 5321
 * 2.4 lets only the domain be compared case-insensitively. A lookup is at most
 * two point reads, so its cost does not grow with the list (LevelDB is a
 * sorted table: O(log n) with bloom filters on each level).
 *
 * Policy: bulk mail is suppressed by any entry in `*` or in its list's scope;
 * transactional mail skips unsubscribe entries (list or account-wide) but
 * never hard bounces, complaints or manual entries.
 */
import { normalizeEmail } from '../common/address.js';
import type { Stream } from '../common/config.js';
import type { BatchOp, Store } from '../common/store.js';

/** `soft-bounces`: feedback.softBounceLimit soft bounces within feedback.softBounceDays. */
export type SuppressionReason = 'hard-bounce' | 'soft-bounces' | 'complaint' | 'unsubscribe' | 'manual';

export interface SuppressionEntry {
  address: string;
  scope: string;
  reason: SuppressionReason;
  at: string;
  detail?: string | undefined;
  /** The copy whose bounce, complaint or unsubscribe put the address here. */
  queueId?: string | undefined;
}

function key(account: string, scope: string, address: string): string {
  return `s!${account}!${scope}!${normalizeEmail(address)}`;
}

export function listScope(list: string): string {
  return `list:${list}`;
}

export class SuppressionList {
  constructor(private readonly store: Store) {}

  addOps(account: string, entry: Omit<SuppressionEntry, 'at'> & { at?: string }): BatchOp[] {
    const e: SuppressionEntry = { ...entry, address: normalizeEmail(entry.address), at: entry.at ?? new Date().toISOString() };
    return [{ type: 'put', key: key(account, e.scope, e.address), value: Buffer.from(JSON.stringify(e)) }];
  }

  async add(account: string, entry: Omit<SuppressionEntry, 'at'> & { at?: string }, sync = true): Promise<void> {
    await this.store.commit(this.addOps(account, entry), { sync });
  }

  async remove(account: string, address: string, scope = '*'): Promise<void> {
    await this.store.commit([{ type: 'del', key: key(account, scope, address) }], { sync: true });
  }

  /** The entry for this address in one scope (`*` or `list:<name>`), if any. */
  async get(account: string, address: string, scope = '*'): Promise<SuppressionEntry | undefined> {
    const v = await this.store.db.get(key(account, scope, address));
    return v ? (JSON.parse(v.toString('utf8')) as SuppressionEntry) : undefined;
  }

  /** Whether each address has an account-wide (`*`) entry, in one multi-get (the recipients API's `suppressed`). */
  async suppressedMany(account: string, addresses: readonly string[]): Promise<boolean[]> {
    const values = await this.store.db.getMany(addresses.map((a) => key(account, '*', a)));
    return values.map((v) => v !== undefined);
  }

  /** The entry that stops this recipient, or undefined when mail may go. */
  async check(account: string, address: string, opts: { list?: string | undefined; stream: Stream }): Promise<SuppressionEntry | undefined> {
    const keys = [key(account, '*', address)];
    if (opts.list) keys.push(key(account, listScope(opts.list), address));
    const values = await this.store.db.getMany(keys);
    for (const v of values) {
      if (!v) continue;
      const e = JSON.parse(v.toString('utf8')) as SuppressionEntry;
      if (opts.stream === 'transactional' && e.reason === 'unsubscribe') continue;
      return e;
    }
    return undefined;
  }

  async *list(account: string): AsyncGenerator<SuppressionEntry> {
    for await (const e of this.entries({ account })) yield e;
  }

  /**
   * Entries in key order (account, scope, address), optionally of one account, starting
   * after the cursor `after` (the `cursor` of the last entry a reader saw).
   */
  async *entries(o: { account?: string | undefined; after?: string | undefined } = {}): AsyncGenerator<SuppressionEntry & { account: string; cursor: string }> {
    const prefix = o.account ? `s!${o.account}!` : 's!';
    const range = o.after && o.after.startsWith(prefix) ? { gt: o.after, lt: `${prefix}\uffff` } : { gte: prefix, lt: `${prefix}\uffff` };
    for await (const [k, v] of this.store.db.iterator(range)) {
      const account = k.slice(2, k.indexOf('!', 2));
      yield { ...(JSON.parse(v.toString('utf8')) as SuppressionEntry), account, cursor: k };
    }
  }
}
