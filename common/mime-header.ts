/*
 * mime-header.ts — one header block of a message or MIME part, parsed into
 * fields that keep their raw bytes (so untouched fields are written back
 * byte-for-byte), plus the few header-value helpers every stage needs.
 *
 * Standards: RFC 5322 2.2 (fields, folding), RFC 2045 5.1 (Content-Type
 * parameters), RFC 2047 (encoded-words: decoded here, encoded on output with
 * nodemailer's mime-funcs).
 * Side effects: none.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import * as mimeFuncs from 'nodemailer/lib/mime-funcs';

/** RFC 5322 2.1.1: lines SHOULD be at most 78 characters; RFC 2047 2 caps encoded-word lines at 76. */
export const MAX_ENCODED_LINE = 76;

export interface HeaderField {
  /** Field name as written. */
  name: string;
  /** Lower-cased name, for lookups. */
  lower: string;
  /** The whole field as on the wire, folded lines and final CRLF included. */
  raw: Buffer;
}

/** Splits a header block (without the empty line that ends it) into fields. */
export function parseHeaderBlock(block: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  let start = 0;
  let pos = 0;
  while (pos < block.length) {
    let nl = block.indexOf(10, pos);
    if (nl === -1) nl = block.length - 1;
    const next = nl + 1;
    const c = block[next];
    if (next < block.length && (c === 0x20 || c === 0x09)) {
      pos = next; // folded continuation line
      continue;
    }
    const raw = block.subarray(start, next);
    const colon = raw.indexOf(0x3a);
    if (colon > 0) {
      const name = raw.subarray(0, colon).toString('latin1').trim();
      fields.push({ name, lower: name.toLowerCase(), raw });
    }
    start = next;
    pos = next;
  }
  return fields;
}

/** The unfolded value of a field (raw 8-bit bytes read as UTF-8, RFC 6532). */
export function fieldValue(f: HeaderField): string {
  const text = f.raw.toString('utf8');
  return text.slice(text.indexOf(':') + 1).replace(/\r?\n(?=[ \t])/g, '').trim();
}

export function getHeader(fields: readonly HeaderField[], name: string): string | undefined {
  const lower = name.toLowerCase();
  const f = fields.find((x) => x.lower === lower);
  return f ? fieldValue(f) : undefined;
}

/** A new field, folded at 76 characters (structured values are folded at white space only). */
export function makeField(name: string, value: string): HeaderField {
  const line = mimeFuncs.foldLines(`${name}: ${value}`, MAX_ENCODED_LINE, false).replace(/\r?\n/g, '\r\n');
  return { name, lower: name.toLowerCase(), raw: Buffer.from(line.endsWith('\r\n') ? line : line + '\r\n') };
}

export interface ContentType {
  /** Lower-case `type/subtype`; `text/plain` when absent (RFC 2045 5.2). */
  value: string;
  params: Record<string, string>;
}

export function parseContentType(text: string | undefined): ContentType {
  if (!text) return { value: 'text/plain', params: { charset: 'us-ascii' } };
  const parsed = mimeFuncs.parseHeaderValue(text);
  const params: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed.params)) params[k.toLowerCase()] = String(v);
  return { value: String(parsed.value).toLowerCase().trim() || 'text/plain', params };
}

/** Decodes RFC 2047 encoded-words (Q and B) in an unstructured value such as Subject. */
export function decodeWords(value: string): string {
  // Adjacent encoded-words separated only by white space join without it (RFC 2047 6.2).
  return value
    .replace(/(=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[QqBb]\?[^?\s]*\?=)/g, '$1')
    .replace(/=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=/g, (whole, charset: string, enc: string, text: string) => {
      const bytes = enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64') : qDecode(text);
      try {
        return new TextDecoder(charset.replace(/\*.*$/, '')).decode(bytes);
      } catch {
        return whole; // unknown charset: leave the word as it was
      }
    });
}

function qDecode(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '_') out.push(0x20);
    else if (c === '=' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(c.charCodeAt(0) & 0xff);
  }
  return Buffer.from(out);
}

/**
 * Text that goes into a header value (a merge value, a display name): CR, LF
 * and the other control characters but TAB become one space, so the text can
 * neither add a header line nor end the header block (RFC 5322 2.2, 3.2.5).
 */
export function sanitizeHeaderText(text: string): string {
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f]+/g, ' ');
}

/** An unstructured value (Subject) as RFC 2047 Q encoded-words when it is not plain ASCII. */
export function encodeUnstructured(value: string): string {
  // 52 leaves room for "Subject: " and the =?UTF-8?Q?...?= wrapper within 76 characters.
  return mimeFuncs.isPlainText(value) ? value : mimeFuncs.encodeWords(value, 'Q', 52, false);
}

/**
 * Past this many characters a non-ASCII unstructured value is written as base64
 * words by `encodedWords` (linear) instead of nodemailer's encodeWords and
 * foldLines, which held the event loop ~0.13 s at 64 KiB and ~1.7 s at 1 MB
 * (issue #11: a raw 8-bit megabyte Subject). Real subjects stay on nodemailer's
 * Q words, byte for byte as before.
 */
const NODEMAILER_WORDS_MAX = 2048;
/** Bytes per B word: 39 → 52 base64 characters, so " =?UTF-8?B?…?=" is 65 characters and the first line fits 76 with a name of up to 11. */
const B_WORD_BYTES = 39;

/** Characters of the value encoded between two turns of the event loop (≤ 96 KiB of UTF-8, ~2,500 words: a few ms). */
const CHARS_PER_SLICE = 32 * 1024;
const CRLF = Buffer.from('\r\n');

/**
 * `name: value` as RFC 2047 B encoded-words, one per folded line, each whole
 * UTF-8 characters (RFC 2047 5: a word never splits one). Linear, built as
 * bytes slice by slice (one flat megabyte string and its UTF-8 copy alone held
 * the thread ~0.2 s), yielding the event loop between slices: the caller runs
 * on the thread that serves SMTP and HTTP.
 */
async function encodedWordsField(name: string, value: string): Promise<Buffer> {
  const out: Buffer[] = [Buffer.from(`${name}: `)];
  for (let pos = 0; pos < value.length; ) {
    let end = Math.min(pos + CHARS_PER_SLICE, value.length);
    const last = value.charCodeAt(end - 1);
    if (end < value.length && last >= 0xd800 && last <= 0xdbff) end--; // keep a surrogate pair together
    const bytes = Buffer.from(value.slice(pos, end), 'utf8');
    const words: string[] = [];
    for (let i = 0; i < bytes.length; ) {
      let stop = Math.min(i + B_WORD_BYTES, bytes.length);
      while (stop < bytes.length && stop > i + 1 && (bytes[stop]! & 0xc0) === 0x80) stop--; // not before a continuation byte
      words.push(`=?UTF-8?B?${bytes.toString('base64', i, stop)}?=`);
      i = stop;
    }
    out.push(Buffer.from(`${pos > 0 ? '\r\n ' : ''}${words.join('\r\n ')}`, 'latin1'));
    pos = end;
    await nextTurn();
  }
  out.push(CRLF);
  return Buffer.concat(out);
}

/**
 * An unstructured field (Subject) holding `value`, encoded (RFC 2047) and folded:
 * nodemailer's Q words for ordinary values, one base64 word per folded line for
 * long ones (see NODEMAILER_WORDS_MAX), in time linear in the value's length.
 */
export async function unstructuredField(name: string, value: string): Promise<HeaderField> {
  if (value.length <= NODEMAILER_WORDS_MAX || mimeFuncs.isPlainText(value)) return makeField(name, encodeUnstructured(value));
  return { name, lower: name.toLowerCase(), raw: await encodedWordsField(name, value) };
}

/** Reads the header block at the start of a stream: stops at the empty line or after `max` bytes. */
export function headerBlockEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  if (crlf !== -1) return crlf + 2;
  if (buf.subarray(0, 2).toString() === '\r\n') return 0;
  return -1;
}
