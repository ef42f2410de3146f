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

/** Reads the header block at the start of a stream: stops at the empty line or after `max` bytes. */
export function headerBlockEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  if (crlf !== -1) return crlf + 2;
  if (buf.subarray(0, 2).toString() === '\r\n') return 0;
  return -1;
}
