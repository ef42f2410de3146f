/*
 * recipient-db.ts — the recipient database: every address the account has
 * sent to or imported, with merge fields, the lists it was mailed through and
 * counters of what happened to its mail.
 *
 * Keys in the hosted LevelDB (addresses with the domain lower-cased, RFC 5321
 * 2.4), one writer each, so no writer can lose another's update by writing
 * back a value it read before the other wrote:
 *   r!<account>!<address>   {address, lists, firstSeen}: created by traffic (the
 *                           rewrap, in the same batch as the queue move) or by
 *                           the API/import
 *   rf!<account>!<address>  {fields}: merge fields, written by the API and imports only
 *   rc!<account>!<address>  counters (sent, bounced, complained, last sent/opened/
 *                           clicked), written by the projection of the event log only
 *                           (recipients/projection.ts)
 *   rx!<account>!<pseudonym>  the address was deleted on a privacy request: traffic and
 *                           imports do not create it again (recipients/pseudonym.ts)
 * Merge tags read `fields` after X-Postino-Vars (rewrap/steps/merge-fields.ts).
 *
 * One interface, RecipientDb, two backends chosen once at start
 * (app/shared-state.ts): LevelRecipientDb below (the default: the node's own
 * LevelDB, one node) and PgRecipientDb (recipient-db-postgres.ts: one table
 * shared by every node, storage.postgres). Writers that commit with a LevelDB
 * batch of their own (the rewrap's queue move, the projection's cursor) get
 * ops back; the PostgreSQL backend writes its part itself, or parks it in the
 * node's LevelDB with that batch (traffic-created entries).
 * Side effects: LevelDB reads and writes.
 */
import { normalizeEmail } from '../common/address.js';
import { KeyedLock } from '../common/keyed-lock.js';
import { PostinoError } from '../common/errors.js';
import type { BatchOp, Store } from '../common/store.js';
import { MAX_FIELDS } from './recipients/fields.js';
import type { Pseudonymizer } from './recipients/pseudonym.js';

/** What the rewrap reads and writes: the entry and its merge fields. */
export interface RecipientRecord {
  address: string;
  fields: Record<string, string>;
  lists: string[];
  firstSeen: string;
}

/** Counters kept from the event log (recipients/projection.ts). */
export interface RecipientCounters {
  sent: number;
  bounced: number;
  complained: number;
  lastSent?: string | undefined;
  lastOpened?: string | undefined;
  lastClicked?: string | undefined;
}

export const NO_COUNTERS: Readonly<RecipientCounters> = Object.freeze({ sent: 0, bounced: 0, complained: 0 });

/** An entry as the API shows it. */
export interface RecipientView extends RecipientRecord, RecipientCounters {
  account: string;
}

/** What the projection adds to one entry's counters: counts to add, times to keep the later of. */
export interface CounterDelta {
  account: string;
  address: string;
  d: RecipientCounters;
}

/** A row an import writes: the whole entry as it is to be (fields merged), and whether it is new. */
export interface ImportedRow {
  rec: RecipientRecord;
  created: boolean;
}

export interface RecipientDb {
  /** Without a pseudonymizer (unit tests of the rewrap) deleted addresses are not remembered. */
  readonly pseudonyms?: Pseudonymizer | undefined;
  /** Runs a read-modify-write section alone on this node (see LevelRecipientDb.exclusive). */
  exclusive<T>(section: () => Promise<T>): Promise<T>;
  /** Entries with their merge fields, in the order asked; undefined where there is none. */
  getMany(account: string, addresses: readonly string[]): Promise<Array<RecipientRecord | undefined>>;
  get(account: string, address: string): Promise<RecipientRecord | undefined>;
  /** For the rewrap, once per message: the entries, and which of the missing ones were deleted (one read). */
  lookupForTraffic(account: string, addresses: readonly string[]): Promise<{ records: Array<RecipientRecord | undefined>; erased: boolean[] }>;
  /** The rewrap's write of an entry it creates (`list` undefined) or mails through a new list: ops for the queue move's batch. */
  trafficOps(account: string, rec: RecipientRecord, list: string | undefined): BatchOp[];
  /** Whether each address was deleted on a privacy request (and not re-created since). */
  erasedMany(account: string, addresses: readonly string[]): Promise<boolean[]>;
  /** One import batch, whole or not at all (not synced: the import ends with one synced write). */
  writeImported(account: string, rows: readonly ImportedRow[]): Promise<void>;
  /** Sets (or, with null, removes) merge fields of an address; creates the entry if needed. */
  setFields(account: string, address: string, fields: Record<string, string | null>, replace?: boolean): Promise<RecipientRecord & { created: boolean }>;
  /** Removes everything kept about the address and marks it deleted; ops for the eraser's batch (recipients/erase.ts). */
  eraseOps(account: string, address: string, at: string): Promise<BatchOp[]>;
  /** Full views (fields and counters) of addresses, in the order asked. */
  viewMany(account: string, addresses: readonly string[]): Promise<Array<RecipientView | undefined>>;
  /** Entries in (account, address) byte order, of one account or all, after the cursor `after`. */
  entries(o?: { account?: string | undefined; after?: string | undefined }): AsyncGenerator<{ account: string; address: string; cursor: string }>;
  /** The sorted field names any entry of the account has (the CSV export's columns). */
  fieldNames(account: string): Promise<string[]>;
  /**
   * The projection's pass: adds the deltas to the entries that exist (others are passed over) and
   * records `last` (the last event seq counted) with them, exactly once; `localOps` (its LevelDB
   * cursor) are committed after.
   */
  countEvents(deltas: readonly CounterDelta[], last: number, localOps: BatchOp[]): Promise<void>;
  /** Where the counters stand (the last seq counted) when kept outside the node's LevelDB; undefined otherwise. */
  countedUpTo(): Promise<number | undefined>;
  close(): Promise<void>;
}

/** Adds a delta to counters: counts add up, the last-seen times keep the later one. */
export function addCounters(c: RecipientCounters, d: RecipientCounters): RecipientCounters {
  const later = (a: string | undefined, b: string | undefined): string | undefined => (a === undefined ? b : b === undefined || a > b ? a : b);
  const out: RecipientCounters = { sent: c.sent + d.sent, bounced: c.bounced + d.bounced, complained: c.complained + d.complained };
  const [s, o, k] = [later(c.lastSent, d.lastSent), later(c.lastOpened, d.lastOpened), later(c.lastClicked, d.lastClicked)];
  if (s !== undefined) out.lastSent = s;
  if (o !== undefined) out.lastOpened = o;
  if (k !== undefined) out.lastClicked = k;
  return out;
}

interface StoredBase {
  address: string;
  lists: string[];
  firstSeen: string;
}

export const baseKey = (account: string, address: string): string => `r!${account}!${normalizeEmail(address)}`;
export const fieldsKey = (account: string, address: string): string => `rf!${account}!${normalizeEmail(address)}`;
export const countersKey = (account: string, address: string): string => `rc!${account}!${normalizeEmail(address)}`;
const erasedKey = (account: string, pseudonym: string): string => `rx!${account}!${pseudonym}`;

function parse<T>(v: Buffer | undefined): T | undefined {
  return v ? (JSON.parse(v.toString('utf8')) as T) : undefined;
}

function json(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v));
}

export class LevelRecipientDb implements RecipientDb {
  private readonly lock = new KeyedLock();

  /** Without a pseudonymizer (unit tests of the rewrap) deleted addresses are not remembered. */
  constructor(
    private readonly store: Store,
    readonly pseudonyms?: Pseudonymizer,
  ) {}

  /**
   * Runs a read-modify-write of fields, counters or deletions (API, import,
   * projection, privacy delete) alone: each reads what it changes and writes it
   * back, so two at once could lose one's update or bring back a deleted entry.
   * Sections are short (one import batch at most).
   */
  exclusive<T>(section: () => Promise<T>): Promise<T> {
    return this.lock.run('recipients', section);
  }

  /** Entries with their merge fields, in the order asked; undefined where there is none. */
  async getMany(account: string, addresses: readonly string[]): Promise<Array<RecipientRecord | undefined>> {
    const bases = this.store.getManyNow(addresses.map((a) => baseKey(account, a))).map((v) => parse<StoredBase>(v));
    // Fields only of the entries that exist: a first import (every address new) reads half as much.
    const known = addresses.filter((_, i) => bases[i] !== undefined);
    const fields = known.length ? this.store.getManyNow(known.map((a) => fieldsKey(account, a))) : [];
    let k = 0;
    return bases.map((b) => (b ? join(b, parse<{ fields: Record<string, string> }>(fields[k++])) : undefined));
  }

  async get(account: string, address: string): Promise<RecipientRecord | undefined> {
    return (await this.getMany(account, [address]))[0];
  }

  /** For the rewrap: the entries, and which of the missing ones were deleted (and so must not be created again). */
  async lookupForTraffic(account: string, addresses: readonly string[]): Promise<{ records: Array<RecipientRecord | undefined>; erased: boolean[] }> {
    // Entries, fields and deletion marks, read on this thread (store.ts getManyNow): this runs
    // once per message, and an async LevelDB read is a round trip to the thread pool (issue #17).
    const p = this.pseudonyms;
    const n = addresses.length;
    const keys = [...addresses.map((a) => baseKey(account, a)), ...addresses.map((a) => fieldsKey(account, a)), ...(p ? addresses.map((a) => erasedKey(account, p.of(account, a))) : [])];
    const values = this.store.getManyNow(keys);
    const records = addresses.map((_, i) => {
      const b = parse<StoredBase>(values[i]);
      return b ? join(b, parse<{ fields: Record<string, string> }>(values[n + i])) : undefined;
    });
    return { records, erased: addresses.map((_, i) => p !== undefined && values[2 * n + i] !== undefined && records[i] === undefined) };
  }

  /** Whether each address was deleted on a privacy request (and not re-created since). */
  async erasedMany(account: string, addresses: readonly string[]): Promise<boolean[]> {
    const p = this.pseudonyms;
    if (!p || addresses.length === 0 || !(await this.anyErased(account))) return addresses.map(() => false);
    const marks = await this.store.db.getMany(addresses.map((a) => erasedKey(account, p.of(account, a))));
    return marks.map((m) => m !== undefined);
  }

  /** Whether the account has any deleted address at all: one seek, which spares an import a MAC per row in the usual case. */
  private async anyErased(account: string): Promise<boolean> {
    const prefix = `rx!${account}!`;
    const keys = await this.store.db.keys({ gte: prefix, lt: `${prefix}\uffff`, limit: 1 }).all();
    return keys.length > 0;
  }

  /** The entry itself (address, lists, first seen); the fields are written by fieldsOps. */
  putOps(account: string, rec: Omit<RecipientRecord, 'fields'> & { fields?: unknown }): BatchOp[] {
    const base: StoredBase = { address: normalizeEmail(rec.address), lists: rec.lists, firstSeen: rec.firstSeen };
    return [{ type: 'put', key: baseKey(account, rec.address), value: json(base) }];
  }

  /** Replaces the merge fields of an address (an empty set removes the key). */
  fieldsOps(account: string, address: string, fields: Record<string, string>): BatchOp[] {
    const key = fieldsKey(account, address);
    return Object.keys(fields).length === 0 ? [{ type: 'del', key }] : [{ type: 'put', key, value: json({ fields }) }];
  }

  /** A re-created address is no longer marked deleted. */
  undeleteOps(account: string, address: string): BatchOp[] {
    return this.pseudonyms ? [{ type: 'del', key: erasedKey(account, this.pseudonyms.of(account, address)) }] : [];
  }

  /** Removes everything kept about the address and marks it deleted (recipients/erase.ts adds the rest). */
  deleteOps(account: string, address: string, at: string): BatchOp[] {
    const ops: BatchOp[] = [
      { type: 'del', key: baseKey(account, address) },
      { type: 'del', key: fieldsKey(account, address) },
      { type: 'del', key: countersKey(account, address) },
    ];
    if (this.pseudonyms) ops.push({ type: 'put', key: erasedKey(account, this.pseudonyms.of(account, address)), value: json({ at }) });
    return ops;
  }

  /** Sets (or, with null, removes) merge fields of an address; creates the entry if needed. */
  setFields(account: string, address: string, fields: Record<string, string | null>, replace = false): Promise<RecipientRecord & { created: boolean }> {
    return this.exclusive(() => this.setFieldsNow(account, address, fields, replace));
  }

  private async setFieldsNow(account: string, address: string, fields: Record<string, string | null>, replace: boolean): Promise<RecipientRecord & { created: boolean }> {
    const cur = await this.get(account, address);
    const next: RecipientRecord = cur ? { ...cur, fields: replace ? {} : { ...cur.fields } } : { address: normalizeEmail(address), fields: {}, lists: [], firstSeen: new Date().toISOString() };
    for (const [k, v] of Object.entries(fields)) {
      if (v === null) delete next.fields[k];
      else next.fields[k] = v;
    }
    if (Object.keys(next.fields).length > MAX_FIELDS) throw new PostinoError('BAD_REQUEST', `more than ${MAX_FIELDS} fields`);
    const ops = [...(cur ? [] : [...this.putOps(account, next), ...this.undeleteOps(account, address)]), ...this.fieldsOps(account, address, next.fields)];
    await this.store.commit(ops, { sync: true });
    return { ...next, created: !cur };
  }

  /** Full views (fields and counters) of addresses, in the order asked. */
  async viewMany(account: string, addresses: readonly string[]): Promise<Array<RecipientView | undefined>> {
    const recs = await this.getMany(account, addresses);
    const counters = await this.store.db.getMany(addresses.map((a) => countersKey(account, a)));
    return recs.map((r, i) => (r ? { account, ...r, ...NO_COUNTERS, ...parse<RecipientCounters>(counters[i]) } : undefined));
  }

  /**
   * Entries in key order (account, address), of one account or all, after the
   * cursor `after` (the `cursor` of the last entry a reader saw); fields and
   * counters are not joined (see viewMany).
   */
  async *entries(o: { account?: string | undefined; after?: string | undefined } = {}): AsyncGenerator<{ account: string; address: string; cursor: string }> {
    const prefix = o.account ? `r!${o.account}!` : 'r!';
    const range = o.after && o.after.startsWith(prefix) ? { gt: o.after, lt: `${prefix}\uffff` } : { gte: prefix, lt: `${prefix}\uffff` };
    for await (const k of this.store.db.keys(range)) {
      const sep = k.indexOf('!', 2);
      yield { account: k.slice(2, sep), address: k.slice(sep + 1), cursor: k };
    }
  }

  /** The merge fields of every entry of an account that has any, in key order. */
  async *allFields(account: string): AsyncGenerator<Record<string, string>> {
    const prefix = `rf!${account}!`;
    for await (const v of this.store.db.values({ gte: prefix, lt: `${prefix}\uffff` })) yield (JSON.parse(v.toString('utf8')) as { fields: Record<string, string> }).fields;
  }

  trafficOps(account: string, rec: RecipientRecord): BatchOp[] {
    return this.putOps(account, rec);
  }

  async writeImported(account: string, rows: readonly ImportedRow[]): Promise<void> {
    const ops: BatchOp[] = [];
    for (const { rec, created } of rows) {
      if (created) ops.push(...this.putOps(account, rec));
      ops.push(...this.fieldsOps(account, rec.address, rec.fields));
    }
    await this.store.commit(ops, { sync: false });
  }

  async eraseOps(account: string, address: string, at: string): Promise<BatchOp[]> {
    return this.deleteOps(account, address, at);
  }

  async fieldNames(account: string): Promise<string[]> {
    const names = new Set<string>();
    for await (const fields of this.allFields(account)) for (const k of Object.keys(fields)) names.add(k);
    return [...names].sort();
  }

  /** Read-modify-write of the counters, in one batch with the projection's cursor (localOps). */
  async countEvents(deltas: readonly CounterDelta[], _last: number, localOps: BatchOp[]): Promise<void> {
    const { exists, counters } = await this.countersMany(deltas);
    const ops = [...localOps];
    deltas.forEach((p, i) => {
      if (exists[i]) ops.push(...this.countersOps(p.account, p.address, addCounters(counters[i]!, p.d)));
    });
    await this.store.commit(ops, { sync: false });
  }

  /** The cursor is the projection's own LevelDB key. */
  async countedUpTo(): Promise<number | undefined> {
    return undefined;
  }

  async close(): Promise<void> {}

  /** Counters of (account, address) pairs, for the projection's read-modify-write. */
  async countersMany(pairs: ReadonlyArray<{ account: string; address: string }>): Promise<{ exists: boolean[]; counters: RecipientCounters[] }> {
    const keys = pairs.flatMap((p) => [baseKey(p.account, p.address), countersKey(p.account, p.address)]);
    const values = this.store.getManyNow(keys); // on this thread: see store.ts
    return {
      exists: pairs.map((_, i) => values[2 * i] !== undefined),
      counters: pairs.map((_, i) => ({ ...NO_COUNTERS, ...parse<RecipientCounters>(values[2 * i + 1]) })),
    };
  }

  countersOps(account: string, address: string, c: RecipientCounters): BatchOp[] {
    return [{ type: 'put', key: countersKey(account, address), value: json(c) }];
  }
}

function join(base: StoredBase | undefined, f: { fields: Record<string, string> } | undefined): RecipientRecord | undefined {
  if (!base) return undefined;
  return { address: base.address, lists: base.lists, firstSeen: base.firstSeen, fields: f?.fields ?? {} };
}
