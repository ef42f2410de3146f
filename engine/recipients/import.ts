/*
 * import.ts — recipients from a CSV (a header row: `address` then one column
 * per merge field) or NDJSON (`{"address": …, "fields": {…}}` per line, as the
 * NDJSON export writes them) stream, for POST /api/recipients/import.
 *
 * A row sets the fields it has a value for and leaves the others as they are
 * (an empty CSV cell sets nothing); an address not yet known is created.
 * A bad row (wrong column count, invalid address, bad field name or value, a
 * line over MAX_LINE characters, an address deleted on a privacy request) is
 * reported with its line number and reason and the rest are imported; a bad
 * header refuses the whole import (every row depends on it).
 *
 * Atomic per batch, idempotent as a whole: rows are written in LevelDB
 * batches of IMPORT_BATCH, each batch whole or not at all (an entry and its
 * fields in the same batch, so no entry is ever half-written), and one synced
 * write ends the import. An import cut short (SIGKILL of the node or the
 * client) keeps the batches before the cut; running the same file again
 * completes it (rows already in are counted `unchanged`).
 * With storage.postgres a batch is one multi-row upsert (recipient-db-postgres.ts):
 * two reads and one write per IMPORT_BATCH rows, never a round trip per row.
 * Side effects: LevelDB reads and writes (PostgreSQL with storage.postgres).
 */
import type { Readable } from 'node:stream';
import { boundedLineBatches, readCsvRecordBatches } from '../../common/csv.js';
import { PostinoError } from '../../common/errors.js';
import type { Store } from '../../common/store.js';
import { normalizeEmail } from '../../common/address.js';
import type { ImportedRow, RecipientDb, RecipientRecord } from '../recipient-db.js';
import { addressProblem } from '../suppression-routes.js';
import { fieldNameProblem, fieldsProblem, fieldValueProblem, MAX_FIELDS } from './fields.js';

/** Rows per LevelDB batch: large enough that a million rows take seconds, small enough to hold the write lock briefly. */
const IMPORT_BATCH = 5_000;
/** Rejected rows listed one by one in the answer; the rest are only counted. */
export const MAX_REJECTED_LISTED = 1_000;
/** A row longer than this is refused unread: 100 fields of a few hundred characters fit with room to spare. */
export const MAX_LINE = 64 * 1024;
/** Keys an NDJSON export line carries besides address and fields: read-only, ignored on import. */
const EXPORT_ONLY_KEYS = new Set(['account', 'lists', 'firstSeen', 'sent', 'bounced', 'complained', 'lastSent', 'lastOpened', 'lastClicked', 'suppressed']);

export type ImportFormat = 'csv' | 'ndjson';

export interface ImportSummary {
  /** Data rows read (header and blank lines not counted). */
  rows: number;
  created: number;
  updated: number;
  unchanged: number;
  rejectedCount: number;
  rejected: Array<{ line: number; reason: string }>;
}

interface Row {
  line: number;
  address: string;
  fields: Record<string, string>;
}

type Parsed = Row | { line: number; error: string };

/** The header's field names, or a 400 naming the column and why. */
function headerFields(fields: string[]): string[] {
  const [first = '', ...rest] = fields.map((f) => f.trim());
  if (!/^(e-?mail|address)$/i.test(first)) throw new PostinoError('BAD_REQUEST', `line 1 (header): the first column is "address" (found "${first.slice(0, 80)}")`);
  if (rest.length > MAX_FIELDS) throw new PostinoError('BAD_REQUEST', `line 1 (header): more than ${MAX_FIELDS} field columns`);
  const seen = new Set<string>();
  rest.forEach((name, i) => {
    const p = fieldNameProblem(name) ?? (seen.has(name) ? `field "${name}" appears twice` : undefined);
    if (p) throw new PostinoError('BAD_REQUEST', `line 1 (header), column ${i + 2}: ${p}`);
    seen.add(name);
  });
  return rest;
}

/** Rows of a CSV stream, a chunk's worth at a time (see csv.ts: one await per chunk, not per row). */
async function* csvRows(input: Readable): AsyncGenerator<Parsed[]> {
  let names: string[] | undefined;
  for await (const records of readCsvRecordBatches(input, MAX_LINE)) {
    const out: Parsed[] = [];
    for (const r of records) {
      if ('error' in r) {
        if (!names) throw new PostinoError('BAD_REQUEST', `line ${r.line} (header): ${r.error}`);
        out.push(r);
        continue;
      }
      if (!names) {
        names = headerFields(r.fields);
        continue;
      }
      if (r.fields.length !== names.length + 1) {
        out.push({ line: r.line, error: `${r.fields.length} columns; the header has ${names.length + 1}` });
        continue;
      }
      const address = r.fields[0]!.trim();
      const fields: Record<string, string> = {};
      let problem: string | undefined;
      for (let i = 0; i < names.length; i++) {
        const v = r.fields[i + 1]!;
        if (v === '') continue;
        problem ??= fieldValueProblem(names[i]!, v, false);
        fields[names[i]!] = v;
      }
      out.push(problem ? { line: r.line, error: problem } : { line: r.line, address, fields });
    }
    yield out;
  }
  if (!names) throw new PostinoError('BAD_REQUEST', 'empty file: a CSV import starts with a header row (address, then field names)');
}

function ndjsonRow(n: number, text: string | undefined): Parsed | undefined {
  if (text === undefined) return { line: n, error: `line longer than ${MAX_LINE} characters` };
  if (text.trim() === '') return undefined;
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return { line: n, error: 'not a JSON object' };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { line: n, error: 'not a JSON object' };
  const { address, fields = {}, ...rest } = o as Record<string, unknown>;
  const extra = Object.keys(rest).find((k) => !EXPORT_ONLY_KEYS.has(k));
  const problem =
    typeof address !== 'string' ? 'address is missing or not a string' : extra !== undefined ? `unknown key "${extra.slice(0, 80)}" (fields go in "fields")` : fieldsProblem(fields, false);
  return problem ? { line: n, error: problem } : { line: n, address: (address as string).trim(), fields: fields as Record<string, string> };
}

async function* ndjsonRows(input: Readable): AsyncGenerator<Parsed[]> {
  for await (const lines of boundedLineBatches(input, MAX_LINE)) {
    const out: Parsed[] = [];
    for (const { n, text } of lines) {
      const r = ndjsonRow(n, text);
      if (r) out.push(r);
    }
    yield out;
  }
}

function sameFields(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
}

export interface ImportOptions {
  store: Store;
  db: RecipientDb;
  account: string;
  format: ImportFormat;
  /** For tests: how many rows go in one batch. */
  batchRows?: number;
}

export async function importRecipients(o: ImportOptions, input: Readable): Promise<ImportSummary> {
  const { db, account } = o;
  const sum: ImportSummary = { rows: 0, created: 0, updated: 0, unchanged: 0, rejectedCount: 0, rejected: [] };
  const reject = (line: number, reason: string): void => {
    sum.rejectedCount++;
    if (sum.rejected.length < MAX_REJECTED_LISTED) sum.rejected.push({ line, reason });
  };
  const now = new Date().toISOString();

  /** One batch: read what is there, merge, write it all in one LevelDB batch. */
  const flush = (rows: Row[]): Promise<void> =>
    db.exclusive(async () => {
      const addresses = [...new Set(rows.map((r) => r.address))];
      const [current, erased] = await Promise.all([db.getMany(account, addresses), db.erasedMany(account, addresses)]);
      const state = new Map<string, { rec: RecipientRecord | undefined; erased: boolean; created: boolean; dirty: boolean }>();
      addresses.forEach((a, i) => state.set(a, { rec: current[i], erased: erased[i]!, created: false, dirty: false }));
      for (const r of rows) {
        const s = state.get(r.address)!;
        if (!s.rec && s.erased) {
          reject(r.line, `${r.address}: deleted on a privacy request; an import does not bring it back (PUT /api/recipients/<address> does)`);
          continue;
        }
        const fields = { ...(s.rec?.fields ?? {}), ...r.fields };
        if (Object.keys(fields).length > MAX_FIELDS) {
          reject(r.line, `${r.address}: more than ${MAX_FIELDS} fields`);
          continue;
        }
        if (!s.rec) {
          s.rec = { address: r.address, fields, lists: [], firstSeen: now };
          s.created = true;
          s.dirty = true;
          sum.created++;
        } else if (sameFields(s.rec.fields, fields)) {
          sum.unchanged++;
        } else {
          s.rec = { ...s.rec, fields };
          s.dirty = true;
          if (!s.created) sum.updated++;
        }
      }
      const writes: ImportedRow[] = [];
      for (const s of state.values()) if (s.dirty && s.rec) writes.push({ rec: s.rec, created: s.created });
      await db.writeImported(account, writes);
    });

  const batchRows = o.batchRows ?? IMPORT_BATCH;
  let batch: Row[] = [];
  for await (const parsed of o.format === 'csv' ? csvRows(input) : ndjsonRows(input)) {
    for (const r of parsed) {
      sum.rows++;
      if ('error' in r) {
        reject(r.line, r.error);
        continue;
      }
      const problem = addressProblem(r.address);
      if (problem) {
        reject(r.line, `${r.address.slice(0, 80) || '(empty)'}: ${problem}`);
        continue;
      }
      r.address = normalizeEmail(r.address);
      batch.push(r);
      if (batch.length >= batchRows) {
        await flush(batch);
        batch = [];
      }
    }
  }
  if (batch.length) await flush(batch);
  // One synced write makes the unsynced batches before it durable too (LevelDB has one log).
  await o.store.commit([{ type: 'put', key: `meta!last-recipient-import!${account}`, value: Buffer.from(now) }], { sync: true });
  return sum;
}
