/*
 * export.ts — the recipients of an account as CSV or NDJSON, streamed, for
 * GET /api/recipients/export.
 *
 * CSV: a header row `address,<field>,<field>…` (every field name any entry
 * has, sorted) and one row per entry; exactly what an import reads, so an
 * export imported again changes nothing. NDJSON: one full entry per line
 * (fields, lists, first seen, counters, suppressed), which an NDJSON import
 * also reads (the read-only keys are ignored).
 * The CSV needs its columns before its first row, so it reads the account's
 * fields twice (names first, then the rows); memory stays at one page.
 * Side effects: LevelDB reads.
 */
import { csvRow } from '../../common/csv.js';
import type { RecipientDb, RecipientView } from '../recipient-db.js';
import type { SuppressionList } from '../suppression.js';

/** Entries joined per read: one multi-get each for fields, counters and suppressions. */
const PAGE = 1_000;
/** Bytes of output gathered before a write: fewer, larger chunks on the socket. */
const CHUNK = 64 * 1024;

export type ExportFormat = 'csv' | 'ndjson';

/** Views of every entry, a page at a time, with `suppressed` (an account-wide entry on the suppression list). */
export async function* recipientPages(db: RecipientDb, suppression: SuppressionList, account: string | undefined, after?: string): AsyncGenerator<Array<RecipientView & { suppressed: boolean; cursor: string }>> {
  let keys: Array<{ account: string; address: string; cursor: string }> = [];
  const page = async (): Promise<Array<RecipientView & { suppressed: boolean; cursor: string }>> => {
    const out: Array<RecipientView & { suppressed: boolean; cursor: string }> = [];
    // Entries of one account are contiguous in key order: one multi-get per account in the page.
    for (let i = 0; i < keys.length; ) {
      const acct = keys[i]!.account;
      let j = i;
      while (j < keys.length && keys[j]!.account === acct) j++;
      const slice = keys.slice(i, j);
      const addresses = slice.map((k) => k.address);
      const [views, sup] = await Promise.all([db.viewMany(acct, addresses), suppression.suppressedMany(acct, addresses)]);
      views.forEach((v, n) => {
        if (v) out.push({ ...v, suppressed: sup[n]!, cursor: slice[n]!.cursor });
      });
      i = j;
    }
    return out;
  };
  for await (const k of db.entries({ account, after })) {
    keys.push(k);
    if (keys.length >= PAGE) {
      yield await page();
      keys = [];
    }
  }
  if (keys.length) yield await page();
}

/** The sorted field names any entry of the account has. */
function fieldNames(db: RecipientDb, account: string): Promise<string[]> {
  return db.fieldNames(account);
}

export async function* exportCsv(db: RecipientDb, suppression: SuppressionList, account: string): AsyncGenerator<string> {
  const names = await fieldNames(db, account);
  let chunk = csvRow(['address', ...names]);
  for await (const page of recipientPages(db, suppression, account)) {
    for (const r of page) chunk += csvRow([r.address, ...names.map((n) => r.fields[n])]);
    if (chunk.length >= CHUNK) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

export async function* exportNdjson(db: RecipientDb, suppression: SuppressionList, account: string | undefined): AsyncGenerator<string> {
  let chunk = '';
  for await (const page of recipientPages(db, suppression, account)) {
    for (const { cursor: _cursor, ...r } of page) chunk += JSON.stringify(r) + '\n';
    if (chunk.length >= CHUNK) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}
