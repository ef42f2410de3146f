/*
 * csv.ts — RFC 4180 CSV, one record at a time: quoting on the way out, a
 * line reader on the way in (imports of suppressions and recipients, which
 * can be a million rows: never the whole file in memory).
 *
 * A quoted field may hold commas, doubled quotes and line breaks; the reader
 * joins physical lines until the quotes balance, bounded by MAX_RECORD_CHARS
 * so an unbalanced quote cannot make it read the rest of the file as one row;
 * a physical line is bounded the same way while it is read (never buffered
 * past the bound), so one 10 MB line costs no memory and no later rows.
 * Side effects: none.
 */
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
  if (!text.includes('"')) return text.split(','); // most rows: no quoting, a native split
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

/** A record the reader could not make whole: too long, or a quote never closed. The reader goes on after it. */
export interface CsvBadRecord {
  line: number;
  error: string;
}

const LF = 0x0a;

/** A physical line: its 1-based number, and its text, or undefined when it was over the bound (skipped unread). */
export interface BoundedLine {
  n: number;
  text: string | undefined;
}

/**
 * Physical lines of a stream as strings (CR before LF dropped), a chunk's
 * worth at a time (one await per chunk, not per line: a million-row import
 * spends its time on rows, not on promises). A line over `maxChars` bytes is
 * never held whole: its bytes are skipped up to the next LF and it comes out
 * with `text: undefined`, so a 10 MB line costs no more memory than a short
 * one. (NDJSON imports read their lines with it too.)
 */
export async function* boundedLineBatches(input: Readable, maxChars: number): AsyncGenerator<BoundedLine[]> {
  let parts: Buffer[] = [];
  let size = 0;
  let overlong = false;
  let n = 0;
  const take = (): string | undefined => {
    const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    const end = buf.length > 0 && buf[buf.length - 1] === 0x0d ? buf.length - 1 : buf.length;
    return buf.toString('utf8', 0, end);
  };
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const out: BoundedLine[] = [];
    let from = 0;
    while (from < b.length) {
      const nl = b.indexOf(LF, from);
      const end = nl === -1 ? b.length : nl;
      if (nl !== -1 && parts.length === 0 && !overlong && end - from <= maxChars) {
        // The common case: a whole line inside this chunk.
        n++;
        const e = end > from && b[end - 1] === 0x0d ? end - 1 : end;
        out.push({ n, text: b.toString('utf8', from, e) });
        from = nl + 1;
        continue;
      }
      if (!overlong) {
        if (size + (end - from) > maxChars) {
          overlong = true;
          parts = [];
          size = 0;
        } else if (end > from) {
          parts.push(b.subarray(from, end));
          size += end - from;
        }
      }
      if (nl === -1) break;
      n++;
      out.push({ n, text: overlong ? undefined : take() });
      parts = [];
      size = 0;
      overlong = false;
      from = nl + 1;
    }
    if (out.length) yield out;
  }
  if (overlong || size > 0) yield [{ n: n + 1, text: overlong ? undefined : take() }];
}

/** boundedLineBatches one line at a time. */
export async function* boundedLines(input: Readable, maxChars: number): AsyncGenerator<BoundedLine> {
  for await (const batch of boundedLineBatches(input, maxChars)) yield* batch;
}

/**
 * Records of a CSV stream, in order, a chunk's worth at a time, blank lines
 * skipped; a record that cannot be read (longer than `maxRecordChars`, or a
 * quote never closed) comes out as a CsvBadRecord and the reader resumes at
 * the next line, so one bad row never costs the rows after it (recipient
 * imports report it and go on).
 */
export async function* readCsvRecordBatches(input: Readable, maxRecordChars = MAX_RECORD_CHARS): AsyncGenerator<Array<CsvRecord | CsvBadRecord>> {
  let pending = '';
  let start = 0;
  for await (const lines of boundedLineBatches(input, maxRecordChars)) {
    const out: Array<CsvRecord | CsvBadRecord> = [];
    for (const { n, text: raw } of lines) {
      const line = n === 1 && raw?.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw; // a byte-order mark (Excel)
      if (line === undefined) {
        out.push({ line: pending ? start : n, error: `record longer than ${maxRecordChars} characters${pending ? ' (an unbalanced quote?)' : ''}` });
        pending = '';
        continue;
      }
      if (!pending && line.trim() === '') continue;
      if (!pending) start = n;
      const text = pending ? `${pending}\n${line}` : line;
      if (text.length > maxRecordChars) {
        out.push({ line: start, error: `record longer than ${maxRecordChars} characters (an unbalanced quote?)` });
        pending = '';
        continue;
      }
      const fields = parseCsvRecord(text);
      if (!fields) {
        pending = text;
        continue;
      }
      pending = '';
      out.push({ line: start, fields });
    }
    if (out.length) yield out;
  }
  if (pending) yield [{ line: start, error: 'a quoted field is never closed' }];
}

/** readCsvRecordBatches one record at a time. */
export async function* readCsvRecords(input: Readable, maxRecordChars = MAX_RECORD_CHARS): AsyncGenerator<CsvRecord | CsvBadRecord> {
  for await (const batch of readCsvRecordBatches(input, maxRecordChars)) yield* batch;
}

/** Records of a CSV stream, in order; blank lines are skipped; the first bad record ends it with a CsvError. */
export async function* readCsv(input: Readable): AsyncGenerator<CsvRecord> {
  for await (const r of readCsvRecords(input)) {
    if ('error' in r) throw new CsvError(r.line, r.error);
    yield r;
  }
}
