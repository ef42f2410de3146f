/*
 * report-input.ts — one inbound report read once into the few things the
 * classifiers look at: its top-level header fields, its human-readable text,
 * the machine-readable part (delivery-status or feedback-report) and the
 * header block of the original it returns.
 *
 * Standards: RFC 6522 (multipart/report and its report-type), RFC 3464
 * (message/delivery-status), RFC 6533 (message/global-delivery-status,
 * message/global-headers), RFC 5965 (message/feedback-report), RFC 2046 5.2.1
 * (message/rfc822), RFC 6522 (text/rfc822-headers), RFC 2047 (Subject).
 *
 * MIME is split and decoded by mailparser (transfer encodings, charsets, HTML
 * to text); we only bound what it is given. Bounds, like Postfix's
 * mime_nesting_limit and header_size_limit:
 *   - only the first MAX_READ_BYTES are read: everything a report needs (its
 *     text, its delivery-status fields, the original's headers) comes before
 *     the original's body, which is all a larger input adds;
 *   - at most MAX_MULTIPARTS multipart boundaries are read: the input is cut
 *     before the line that declares one more. mailparser compares each "--"
 *     line with the boundary of every open multipart, so nesting depth times
 *     line count is what a hostile input could make it cost;
 *   - at most MAX_MIME_PARTS parts, header blocks of at most MAX_HEADER_BYTES.
 * Every scan here is one forward pass (indexOf from a moving position).
 *
 * Config: none (the limits are constants: a report is not a customer message).
 * Side effects: none.
 */
import { simpleParser, type Attachment } from 'mailparser';
import { decodeWords, fieldValue, parseContentType, parseHeaderBlock, type HeaderField } from '../../common/mime-header.js';

/** Inputs are read up to here (cut at a line end); the rest is the original's body. */
export const MAX_READ_BYTES = 1024 * 1024;
/** Multipart boundaries read; a real report has 1–4 (report, and the original's alternatives and mixed). */
export const MAX_MULTIPARTS = 16;
/** MIME parts mailparser may create before it gives up (its own default is 1000). */
export const MAX_MIME_PARTS = 128;
/** One header block (the report's or the original's). */
export const MAX_HEADER_BYTES = 256 * 1024;
/** Human-readable text kept for the classifiers. */
export const MAX_TEXT_CHARS = 256 * 1024;
/** HTML parts longer than this are not turned into text. */
const MAX_HTML_CHARS = 512 * 1024;

export interface ReportInput {
  /** Top-level fields, lower-case name → unfolded values in order. */
  headers: ReadonlyMap<string, readonly string[]>;
  /** RFC 2047-decoded Subject, '' when absent. */
  subject: string;
  /** Lower-case `type/subtype` of the message. */
  contentType: string;
  /** Lower-case report-type parameter of a multipart/report, '' otherwise. */
  reportType: string;
  /** Human-readable text (text/plain parts, else the text of the HTML), at most MAX_TEXT_CHARS. */
  text: string;
  /** Body of the first message/delivery-status or message/global-delivery-status part. */
  deliveryStatus?: string | undefined;
  /** Body of the first message/feedback-report part. */
  feedbackReport?: string | undefined;
  /** Header block of the returned original (message/rfc822, text/rfc822-headers or their RFC 6533 forms). */
  originalHeaders?: Buffer | undefined;
  /** Which part the original's headers came from. */
  originalFrom?: 'message' | 'headers' | undefined;
  /** Only a prefix of the input was read. */
  truncated: boolean;
  /** A MIME structure mailparser reads as empty: a multipart without its boundary parameter. */
  mimeProblem?: string | undefined;
}

export type ReadOutcome = { kind: 'read'; input: ReportInput } | { kind: 'unreadable'; reason: string };

/** First value of a top-level field. */
export function header(input: ReportInput, name: string): string | undefined {
  return input.headers.get(name)?.[0];
}

const ORIGINAL_MESSAGE_TYPES = new Set(['message/rfc822', 'message/global']);
const ORIGINAL_HEADER_TYPES = new Set(['text/rfc822-headers', 'message/global-headers', 'text/global-headers']);
const DELIVERY_STATUS_TYPES = new Set(['message/delivery-status', 'message/global-delivery-status']);

export async function readInput(raw: Buffer): Promise<ReadOutcome> {
  if (raw.length === 0) return { kind: 'unreadable', reason: 'empty input' };
  const { bytes, truncated } = readablePrefix(raw);
  const headerEnd = headerBlockLength(bytes);
  if (headerEnd > MAX_HEADER_BYTES) return { kind: 'unreadable', reason: `no header block within ${MAX_HEADER_BYTES} bytes` };
  const fields = parseHeaderBlock(bytes.subarray(0, headerEnd));
  if (fields.length === 0) return { kind: 'unreadable', reason: 'no header fields' };
  const headers = fieldMap(fields);
  const ct = parseContentType(headers.get('content-type')?.[0]);

  let parsed;
  try {
    parsed = await simpleParser(bytes, {
      keepDeliveryStatus: true, // message/delivery-status as an attachment, not mixed into the text
      ignoreEmbedded: true, // message/rfc822 parts stay attachments: the original's text is not the report's
      skipTextToHtml: true,
      skipTextLinks: true,
      skipImageLinks: true,
      checksumAlgo: false,
      maxHtmlLengthToParse: MAX_HTML_CHARS,
      maxChildNodes: MAX_MIME_PARTS,
      maxHeadSize: MAX_HEADER_BYTES,
    });
  } catch (e) {
    return { kind: 'unreadable', reason: `unreadable MIME: ${e instanceof Error ? e.message : String(e)}` };
  }

  const input: ReportInput = {
    headers,
    subject: decodeWords(headers.get('subject')?.[0] ?? ''),
    contentType: ct.value,
    reportType: ct.value === 'multipart/report' ? (ct.params['report-type'] ?? '').toLowerCase().trim() : '',
    text: (parsed.text ?? '').slice(0, MAX_TEXT_CHARS),
    truncated,
    mimeProblem: ct.value.startsWith('multipart/') && !ct.params.boundary ? `${ct.value} without a boundary parameter` : undefined,
  };
  for (const a of parsed.attachments) readAttachment(input, a);
  return { kind: 'read', input };
}

function readAttachment(input: ReportInput, a: Attachment): void {
  const type = a.contentType.toLowerCase();
  if (DELIVERY_STATUS_TYPES.has(type)) input.deliveryStatus ??= a.content.subarray(0, MAX_TEXT_CHARS).toString('utf8');
  else if (type === 'message/feedback-report') input.feedbackReport ??= a.content.subarray(0, MAX_TEXT_CHARS).toString('utf8');
  else if (!input.originalHeaders && ORIGINAL_MESSAGE_TYPES.has(type)) {
    input.originalHeaders = a.content.subarray(0, Math.min(headerBlockLength(a.content), MAX_HEADER_BYTES));
    input.originalFrom = 'message';
  } else if (!input.originalHeaders && ORIGINAL_HEADER_TYPES.has(type)) {
    input.originalHeaders = a.content.subarray(0, MAX_HEADER_BYTES);
    input.originalFrom = 'headers';
  }
}

/** Lower-case name → unfolded, trimmed values. */
export function fieldMap(fields: readonly HeaderField[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const f of fields) {
    const list = map.get(f.lower);
    if (list) list.push(fieldValue(f));
    else map.set(f.lower, [fieldValue(f)]);
  }
  return map;
}

/** Length of the header block at the start of `buf` (up to and including the last field's line end). */
export function headerBlockLength(buf: Buffer): number {
  if (buf[0] === 10 || (buf[0] === 13 && buf[1] === 10)) return 0;
  const limit = Math.min(buf.length, MAX_HEADER_BYTES + 4);
  let pos = 0;
  while (pos < limit) {
    const nl = buf.indexOf(10, pos);
    if (nl === -1 || nl >= limit) return buf.length <= MAX_HEADER_BYTES ? buf.length : MAX_HEADER_BYTES + 1;
    const next = buf[nl + 1];
    if (next === 10) return nl + 1;
    if (next === 13 && buf[nl + 2] === 10) return nl + 1;
    pos = nl + 1;
  }
  return buf.length <= MAX_HEADER_BYTES ? buf.length : MAX_HEADER_BYTES + 1;
}

/**
 * The part of the input we read: at most MAX_READ_BYTES, and ending before
 * the line that declares boundary number MAX_MULTIPARTS + 1; cut at a line end.
 */
export function readablePrefix(raw: Buffer): { bytes: Buffer; truncated: boolean } {
  let end = Math.min(raw.length, MAX_READ_BYTES);
  const latin = raw.toString('latin1', 0, end).toLowerCase();
  let seen = 0;
  for (let pos = latin.indexOf('boundary'); pos !== -1; pos = latin.indexOf('boundary', pos + 8)) {
    if (++seen > MAX_MULTIPARTS) {
      end = latin.lastIndexOf('\n', pos) + 1;
      break;
    }
  }
  if (end < raw.length && seen <= MAX_MULTIPARTS) {
    const nl = raw.lastIndexOf(10, end - 1);
    if (nl > 0) end = nl + 1;
  }
  return end >= raw.length ? { bytes: raw, truncated: false } : { bytes: raw.subarray(0, end), truncated: true };
}
