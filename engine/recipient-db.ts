/*
 * recipient-db.ts — the recipient database: every address the account has
 * sent to, with merge fields and the lists it was mailed through.
 *
 * Keys `r!<account>!<address>` (domain lower-cased, RFC 5321 2.4) in the
 * hosted LevelDB. Entries are created from traffic by the rewrap, in the same
 * batch as the queue move; `setFields` is what the recipients API edits.
 * Merge tags read `fields` after X-Postino-Vars.
 * Side effects: LevelDB reads and writes.
 */
import { normalizeEmail } from '../common/address.js';
import type { BatchOp, Store } from '../common/store.js';

export interface RecipientRecord {
  address: string;
  fields: Record<string, string>;
  lists: string[];
  firstSeen: string;
}

function key(account: string, address: string): string {
  return `r!${account}!${normalizeEmail(address)}`;
}

export class RecipientDb {
  constructor(private readonly store: Store) {}

  async getMany(account: string, addresses: readonly string[]): Promise<Array<RecipientRecord | undefined>> {
    const values = await this.store.db.getMany(addresses.map((a) => key(account, a)));
    return values.map((v) => (v ? (JSON.parse(v.toString('utf8')) as RecipientRecord) : undefined));
  }

  async get(account: string, address: string): Promise<RecipientRecord | undefined> {
    return (await this.getMany(account, [address]))[0];
  }

  putOps(account: string, rec: RecipientRecord): BatchOp[] {
    return [{ type: 'put', key: key(account, rec.address), value: Buffer.from(JSON.stringify(rec)) }];
  }

  /** Sets (or, with null, removes) merge fields of an address; creates the entry if needed. */
  async setFields(account: string, address: string, fields: Record<string, string | null>): Promise<RecipientRecord> {
    const cur = (await this.get(account, address)) ?? { address: normalizeEmail(address), fields: {}, lists: [], firstSeen: new Date().toISOString() };
    const next: RecipientRecord = { ...cur, fields: { ...cur.fields } };
    for (const [k, v] of Object.entries(fields)) {
      if (v === null) delete next.fields[k];
      else next.fields[k] = v;
    }
    await this.store.commit(this.putOps(account, next), { sync: true });
    return next;
  }
}
