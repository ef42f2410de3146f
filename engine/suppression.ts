/*
 * suppression.ts — who must never receive mail again (DESIGN.md guarantee 4).
 *
 * One interface, SuppressionList, two backends chosen once at start from
 * config (app/hosted.ts): LevelSuppressionList below (the default: the node's
 * own LevelDB, one node) and PgSuppressionList (suppression-postgres.ts:
 * storage.postgres, shared by every node). Both are tested by one suite
 * (test/engine/suppression-backends.test.ts).
 *
 * LevelDB: keys `s!<account>!<scope>!<address>` in the hosted LevelDB, where
 * scope is `*` (account-wide) or `list:<name>` (a list-scoped unsubscribe).
 * Addresses are stored with the domain lower-cased and the local part as
 * given: RFC 5321 2.4 lets only the domain be compared case-insensitively. A
 * lookup is at most two point reads, so its cost does not grow with the list
 * (LevelDB is a sorted table: O(log n) with bloom filters on each level).
 *
 * Policy (both backends, `stops` below): bulk mail is suppressed by any entry
 * in `*` or in its list's scope; transactional mail skips unsubscribe entries
 * (list or account-wide) but never hard bounces, complaints or manual entries.
 *
 * Writes that go with local state (an event, a queue move): `addOps` gives the
 * ops for the caller's LevelDB batch. LevelDB: the entries themselves, atomic
 * with the caller's batch. PostgreSQL: the entries are written there first and
 * no op comes back (or, while it is down, ops that park them locally until it
 * returns; see suppression-postgres.ts).
 *
 * Reads that cannot be made (PostgreSQL down) throw PostinoError
 * SHARED_STATE_UNAVAILABLE: the rewrap and delivery give the message back for
 * later (common/dead-letter.ts), the API answers 503; nothing is sent unchecked.
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

/** An entry to add; `at` defaults to now. */
export type NewSuppression = Omit<SuppressionEntry, 'at'> & { at?: string };

/** One recipient to check: its address, the message's list (if any) and stream. */
export interface SuppressionCheck {
  address: string;
  list?: string | undefined;
  stream: Stream;
}

/** An entry as a listing returns it: with its account and the cursor to resume after it. */
export type ListedSuppression = SuppressionEntry & { account: string; cursor: string };

export interface SuppressionList {
  /** Ops for the caller's LevelDB batch that add these entries (see the header). */
  addOps(account: string, entries: readonly NewSuppression[]): Promise<BatchOp[]>;
  /** Adds one entry on its own (durable when it resolves). */
  add(account: string, entry: NewSuppression): Promise<void>;
  /** True when the entry was there (and is now gone). */
  remove(account: string, address: string, scope?: string): Promise<boolean>;
  /** The entry for this address in one scope (`*` or `list:<name>`), if any. */
  get(account: string, address: string, scope?: string): Promise<SuppressionEntry | undefined>;
  /** Whether each address has an account-wide (`*`) entry, in one round trip (the recipients API's `suppressed`). */
  suppressedMany(account: string, addresses: readonly string[]): Promise<boolean[]>;
  /** The entry that stops this recipient, or undefined when mail may go. */
  check(account: string, address: string, opts: { list?: string | undefined; stream: Stream }): Promise<SuppressionEntry | undefined>;
  /** `check` for many recipients in one round trip, answers in the order asked. */
  checkMany(account: string, checks: readonly SuppressionCheck[]): Promise<Array<SuppressionEntry | undefined>>;
  /**
   * Entries in (account, scope, address) order, optionally of one account, starting after
   * the cursor `after` (the `cursor` of the last entry a reader saw; opaque, per backend).
   */
  entries(o?: { account?: string | undefined; after?: string | undefined }): AsyncGenerator<ListedSuppression>;
  /** Releases what the backend holds (a connection pool); the LevelDB store is closed by its owner. */
  close(): Promise<void>;
}

/** The entry with its defaults: address normalised, `at` now unless given. */
export function completeEntry(entry: NewSuppression): SuppressionEntry {
  return { ...entry, address: normalizeEmail(entry.address), at: entry.at ?? new Date().toISOString() };
}

/** The policy of the header: of the entries found (account-wide first, then the list's), the one that stops this stream. */
export function stops(found: ReadonlyArray<SuppressionEntry | undefined>, stream: Stream): SuppressionEntry | undefined {
  for (const e of found) {
    if (!e) continue;
    if (stream === 'transactional' && e.reason === 'unsubscribe') continue;
    return e;
  }
  return undefined;
}

/** The default backend: the node's own LevelDB (see the header). */
export class LevelSuppressionList implements SuppressionList {
  constructor(private readonly store: Store) {}

  async addOps(account: string, entries: readonly NewSuppression[]): Promise<BatchOp[]> {
    return entries.map((entry) => {
      const e = completeEntry(entry);
      return { type: 'put', key: key(account, e.scope, e.address), value: Buffer.from(JSON.stringify(e)) };
    });
  }

  async add(account: string, entry: NewSuppression): Promise<void> {
    await this.store.commit(await this.addOps(account, [entry]), { sync: true });
  }

  async remove(account: string, address: string, scope = '*'): Promise<boolean> {
    const existed = (await this.get(account, address, scope)) !== undefined;
    if (existed) await this.store.commit([{ type: 'del', key: key(account, scope, address) }], { sync: true });
    return existed;
  }

  async get(account: string, address: string, scope = '*'): Promise<SuppressionEntry | undefined> {
    const v = this.store.getNow(key(account, scope, address));
    return v ? (JSON.parse(v.toString('utf8')) as SuppressionEntry) : undefined;
  }

  async suppressedMany(account: string, addresses: readonly string[]): Promise<boolean[]> {
    const values = this.store.getManyNow(addresses.map((a) => key(account, '*', a)));
    return values.map((v) => v !== undefined);
  }

  async check(account: string, address: string, opts: { list?: string | undefined; stream: Stream }): Promise<SuppressionEntry | undefined> {
    return (await this.checkMany(account, [{ address, ...opts }]))[0];
  }

  /** One multi-get of every key asked: each check is its `*` key and, with a list, that list's key. */
  async checkMany(account: string, checks: readonly SuppressionCheck[]): Promise<Array<SuppressionEntry | undefined>> {
    const keys = checks.flatMap((c) => (c.list ? [key(account, '*', c.address), key(account, listScope(c.list), c.address)] : [key(account, '*', c.address)]));
    // Read on this thread (store.ts): mostly absent keys, answered by the tables' bloom filters.
    const values = this.store.getManyNow(keys);
    let i = 0;
    return checks.map((c) => {
      const found = values.slice(i, (i += c.list ? 2 : 1)).map((v) => (v ? (JSON.parse(v.toString('utf8')) as SuppressionEntry) : undefined));
      return stops(found, c.stream);
    });
  }

  async *entries(o: { account?: string | undefined; after?: string | undefined } = {}): AsyncGenerator<ListedSuppression> {
    const prefix = o.account ? `s!${o.account}!` : 's!';
    const range = o.after && o.after.startsWith(prefix) ? { gt: o.after, lt: `${prefix}\uffff` } : { gte: prefix, lt: `${prefix}\uffff` };
    for await (const [k, v] of this.store.db.iterator(range)) {
      const account = k.slice(2, k.indexOf('!', 2));
      yield { ...(JSON.parse(v.toString('utf8')) as SuppressionEntry), account, cursor: k };
    }
  }

  async close(): Promise<void> {}
}
