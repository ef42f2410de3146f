/*
 * csv.ts — RFC 4180 CSV, one record at a time: quoting on the way out, a
 * line reader on the way in (imports of suppressions and recipients, which
 * can be a million rows: never the whole file in memory).
 *
 * A quoted field may hold commas, doubled quotes and line breaks; the reader
 * joins physical lines until the quotes balance, bounded by MAX_RECORD_CHARS
 * so an unbalanced quote cannot make it read the rest of the file as one row.
 * Side effects: none.
 */
import readline from 'node:readline';
import type { Readable } from 'node:stream';

/** A record longer than this is an error in the file, not a record. */
const MAX_RECORD_CHARS = 64 * 1024;

export function csvField(v: string | number | boolean | null | undefined): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvRow(fields: ReadonlyArray<string | number | boolean | null | undefined>): string {
  return fields.map(csvField).join(',') + '\r\n';
}

/** Splits one record; undefined while a quoted field is still open (the caller appends the next line). */
export function parseCsvRecord(text: string): string[] | undefined {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  let atStart = true;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else field += c;
      i++;
      continue;
    }
    if (c === '"' && atStart) {
      quoted = true;
      atStart = false;
    } else if (c === ',') {
      out.push(field);
      field = '';
      atStart = true;
    } else {
      field += c;
      atStart = false;
    }
    i++;
  }
  if (quoted) return undefined;
  out.push(field);
  return out;
}

export interface CsvRecord {
  /** 1-based line number where the record starts (for error reports). */
  line: number;
  fields: string[];
}

export class CsvError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

/** Records of a CSV stream, in order; blank lines are skipped. */
export async function* readCsv(input: Readable): AsyncGenerator<CsvRecord> {
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let pending = '';
  let start = 0;
  let n = 0;
  for await (const line of rl) {
    n++;
    if (!pending && line.trim() === '') continue;
    if (!pending) start = n;
    const text = pending ? `${pending}\n${line}` : line;
    if (text.length > MAX_RECORD_CHARS) throw new CsvError(start, `record longer than ${MAX_RECORD_CHARS} characters (an unbalanced quote?)`);
    const fields = parseCsvRecord(text);
    if (!fields) {
      pending = text;
      continue;
    }
    pending = '';
    yield { line: start, fields };
  }
  if (pending) throw new CsvError(start, 'a quoted field is never closed');
}
