/*
 * mime-text.ts — decode a text part to a string and encode a changed string
 * back with the same Content-Transfer-Encoding.
 *
 * Standards: RFC 2045 6.7 (quoted-printable, lines ≤ 76), 6.8 (base64, lines
 * ≤ 76), RFC 2046 4.1.2 (charset). Charsets: UTF-8 and US-ASCII and ISO-8859-1
 * are written back as they were when the new text fits; any other charset
 * (or new text that does not fit) is written as UTF-8 and the part's
 * Content-Type says so. A 7bit part that gains 8-bit text becomes
 * quoted-printable (it could not be sent as 7bit otherwise), and so does a
 * 7bit or 8bit part with a line over MAX_LINE_OCTETS (tracking links and merge
 * values lengthen lines): quoted-printable keeps the text exactly as it was,
 * where wrapping would cut URLs and change what the recipient reads.
 * Side effects: none.
 */
import { fieldValue, makeField, type HeaderField } from '../../common/mime-header.js';
import type { MimePart } from './mime-scan.js';
import { decodeQuotedPrintable, encodeQuotedPrintable, QP_LINE } from './quoted-printable.js';

/** RFC 2045 6.8: base64 lines are at most 76 characters, as quoted-printable ones (6.7). */
const ENCODED_LINE = QP_LINE;

/** A CR not followed by LF, or an LF not preceded by CR. */
const BARE_BREAK = /\r(?!\n)|(?<!\r)\n/;

/** RFC 5322 2.1.1 (and RFC 5321 4.5.3.1.6): a line is at most 998 octets before its CRLF. */
export const MAX_LINE_OCTETS = 998;

/** Whether some line of the bytes is longer than MAX_LINE_OCTETS (CR LF not counted): one pass. */
export function hasLongLine(bytes: Buffer): boolean {
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, start);
    const end = nl === -1 ? bytes.length : nl > start && bytes[nl - 1] === 0x0d ? nl - 1 : nl;
    if (end - start > MAX_LINE_OCTETS) return true;
    if (nl === -1) return false;
    start = nl + 1;
  }
}

export function decodeTransfer(raw: Buffer, encoding: string): Buffer {
  switch (encoding) {
    case 'base64':
      return Buffer.from(raw.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
    case 'quoted-printable':
      return decodeQuotedPrintable(raw);
    default:
      return raw;
  }
}

function charsetOf(part: MimePart): string {
  return (part.params.charset ?? 'us-ascii').toLowerCase();
}

export function decodeText(part: MimePart, raw: Buffer): string {
  const bytes = decodeTransfer(raw, part.encoding);
  const cs = charsetOf(part);
  try {
    return new TextDecoder(cs === 'us-ascii' || cs === 'ascii' ? 'utf-8' : cs).decode(bytes);
  } catch {
    return bytes.toString('utf8');
  }
}

export interface EncodedText {
  /** New header block of the part (only when a header had to change), else undefined. */
  headers: HeaderField[] | undefined;
  body: Buffer;
}

/** Encodes new text for a part, keeping its transfer encoding (and its charset when the text fits). */
export async function encodeText(part: MimePart, input: string): Promise<EncodedText> {
  // RFC 2046 4.1.1: line breaks in text are CRLF (templates and merge values may bring bare LFs).
  // Tested first: a text of CRLF lines only is the rule, and replacing each of its line breaks by
  // itself built a new string per part (40-60 ms for 1 MB of short lines, in one turn).
  const text = BARE_BREAK.test(input) ? input.replace(/\r?\n|\r/g, '\r\n') : input;
  let cs = charsetOf(part);
  let bytes: Buffer;
  let charsetChanged = false;
  const ascii = !/[^\x00-\x7f]/.test(text);
  if (cs === 'utf-8' || cs === 'utf8') bytes = Buffer.from(text, 'utf8');
  else if ((cs === 'us-ascii' || cs === 'ascii') && ascii) bytes = Buffer.from(text, 'latin1');
  else if ((cs === 'iso-8859-1' || cs === 'latin1') && !/[^\x00-\xff]/.test(text)) bytes = Buffer.from(text, 'latin1');
  else {
    cs = 'utf-8';
    charsetChanged = true;
    bytes = Buffer.from(text, 'utf8');
  }
  let encoding = part.encoding;
  let encodingChanged = false;
  const plain = encoding === '7bit' || encoding === '' || encoding === '8bit';
  // Text that is all ASCII gives ASCII bytes in every charset written here, and text that is not gives 8-bit bytes.
  if (plain && ((encoding !== '8bit' && !ascii) || hasLongLine(bytes))) {
    encoding = 'quoted-printable';
    encodingChanged = true;
  }
  let body: Buffer;
  switch (encoding) {
    case 'base64':
      body = Buffer.from(wrapBase64(bytes.toString('base64')), 'latin1');
      break;
    case 'quoted-printable':
      body = await encodeQuotedPrintable(bytes);
      break;
    default:
      body = bytes;
  }
  if (!charsetChanged && !encodingChanged) return { headers: undefined, body };
  const headers = part.headers.map((f) => {
    if (f.lower === 'content-type' && charsetChanged) return makeField(f.name, withCharset(fieldValue(f), cs));
    if (f.lower === 'content-transfer-encoding' && encodingChanged) return makeField(f.name, encoding);
    return f;
  });
  if (charsetChanged && !headers.some((f) => f.lower === 'content-type')) headers.push(makeField('Content-Type', `${part.type}; charset=${cs}`));
  if (encodingChanged && !headers.some((f) => f.lower === 'content-transfer-encoding')) headers.push(makeField('Content-Transfer-Encoding', encoding));
  return { headers, body };
}

function wrapBase64(b64: string): string {
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += ENCODED_LINE) lines.push(b64.slice(i, i + ENCODED_LINE));
  // No final CRLF: the CRLF before the next delimiter (or the end) belongs to the delimiter (RFC 2046 5.1.1).
  return lines.join('\r\n');
}

function withCharset(contentType: string, cs: string): string {
  // A header value, not a document: replacing one parameter is safe here.
  return /;\s*charset\s*=/i.test(contentType) ? contentType.replace(/(;\s*charset\s*=\s*)("[^"]*"|[^;\s]*)/i, `$1${cs}`) : `${contentType}; charset=${cs}`;
}
