/*
 * part-probe.ts — whether the decoded text of a large body part may hold some
 * ASCII strings (merge tags `{{`, SendGrid substitution keys), found by
 * streaming the part through its transfer decoding in chunks: the part is
 * never held whole, as bytes or as a string.
 *
 * Why (issue #17): merge-fields.ts looks at every body part of every message.
 * Reading a part means its raw bytes, its decoded bytes and a JavaScript string
 * of it, per message in the rewrap: with a 10 MB text/plain body that was
 * 30+ MB of garbage per message, and the hosted process's peak RSS grew with
 * the number of large messages passing (the heap grows with the allocation
 * rate). Almost no large part holds a merge tag; the ones that do are still
 * read whole, as before.
 *
 * The answer is exact for 7bit/8bit/binary (and any unknown) encodings,
 * quoted-printable and base64, the decodings of mime-text.ts decodeTransfer,
 * and for charsets in which the byte of an ASCII character is always that
 * character (UTF-8, the ISO-8859 and Windows single-byte sets, ...). Anything
 * else (UTF-16, Shift_JIS, ISO-2022-JP: an ASCII byte can be half of another
 * character; base64 with padding before its end; a non-ASCII needle) answers
 * "may", and the caller reads the part as before.
 * Side effects: reads the body source.
 */
import type { BodySource } from './body-source.js';
import type { MimePart } from './mime-scan.js';
import { decodeTransfer } from './mime-text.js';
import { nextTurn } from '../../common/next-turn.js';

/**
 * Canonical TextDecoder encodings (WHATWG names) in which byte 0x00-0x7F is
 * always that ASCII character and no multi-byte sequence contains one. A label
 * TextDecoder rejects is decoded as UTF-8 by mime-text.ts decodeText: also safe.
 */
function asciiTransparent(charset: string | undefined): boolean {
  const label = (charset ?? 'us-ascii').toLowerCase();
  if (label === 'us-ascii' || label === 'ascii') return true; // decodeText reads these as UTF-8
  let canonical: string;
  try {
    canonical = new TextDecoder(label).encoding;
  } catch {
    return true;
  }
  return canonical === 'utf-8' || canonical.startsWith('iso-8859-') || canonical.startsWith('windows-') || canonical === 'koi8-r' || canonical === 'koi8-u' || canonical === 'ibm866' || canonical === 'macintosh' || canonical === 'x-mac-cyrillic' || canonical === 'euc-jp' || canonical === 'euc-kr';
}

const LF = 0x0a;

/** Transfer decoding a chunk at a time; `push` returns decoded bytes, or undefined when the probe must give up. */
interface ChunkDecoder {
  push(chunk: Buffer): Buffer | undefined;
  end(): Buffer | undefined;
}

function identity(): ChunkDecoder {
  return { push: (c) => c, end: () => Buffer.alloc(0) };
}

/**
 * Quoted-printable, cut after the last LF of what has arrived: an escape or a
 * soft line break never spans a line break, so decoding line-aligned slices
 * gives the bytes decodeTransfer gives for the whole (mime-text.ts qpDecode).
 */
function quotedPrintable(): ChunkDecoder {
  const decode = (raw: Buffer): Buffer => decodeTransfer(raw, 'quoted-printable');
  let carry: Buffer = Buffer.alloc(0);
  return {
    push(chunk) {
      const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
      const nl = data.lastIndexOf(LF);
      if (nl === -1) {
        carry = Buffer.from(data); // a line without a break: held until one comes (bounded by the part)
        return Buffer.alloc(0);
      }
      carry = Buffer.from(data.subarray(nl + 1));
      return decode(data.subarray(0, nl + 1));
    },
    end: () => decode(carry),
  };
}

/** Base64: the alphabet only (as decodeTransfer keeps it), decoded four characters at a time. */
function base64(): ChunkDecoder {
  let carry = '';
  let padded = false;
  return {
    push(chunk) {
      let s = chunk.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, '');
      // Data after padding: what decodeTransfer makes of it is Node's decoder's business, not ours to predict.
      if (padded) return /[^=]/.test(s) ? undefined : Buffer.alloc(0);
      s = carry + s;
      const pad = s.indexOf('=');
      if (pad !== -1) {
        if (/[^=]/.test(s.slice(pad))) return undefined;
        padded = true;
        carry = '';
        return Buffer.from(s.slice(0, pad), 'base64');
      }
      const whole = s.length - (s.length % 4);
      carry = s.slice(whole);
      return Buffer.from(s.slice(0, whole), 'base64');
    },
    end: () => Buffer.from(carry, 'base64'),
  };
}

/**
 * The needles as the bytes to look for in the part's transfer-decoded bytes: [] when there is
 * nothing to look for, undefined when a byte search cannot answer exactly (see the header).
 */
function searchBytes(part: MimePart, needles: readonly string[]): Buffer[] | undefined {
  const wanted = needles.filter((n) => n.length > 0);
  if (wanted.length === 0) return [];
  if (wanted.some((n) => /[^\x00-\x7f]/.test(n)) || !asciiTransparent(part.params.charset)) return undefined;
  return wanted.map((n) => Buffer.from(n, 'latin1'));
}

/**
 * For a part without a transfer encoding to undo (7bit, 8bit, binary: its raw bytes are its
 * decoded bytes), whether `raw` may hold one of `needles`, answered by a byte search; undefined
 * when only its decoded text can tell. Why (issue #17): the rewrap asked this of every text part
 * by decoding it into a string, 100 KB of string per 100 KB message for a `{{` that is not there.
 */
export function rawMayContain(raw: Buffer, part: MimePart, needles: readonly string[]): boolean | undefined {
  return rawNeedles(part, needles)?.some((b) => raw.includes(b));
}

/**
 * What rawMayContain looks for in the part's raw bytes ([] when nothing), or undefined when a
 * byte search cannot answer: asked before the bytes are read, so that a part only its decoded
 * text can answer for is read once, for that text.
 */
export function rawNeedles(part: MimePart, needles: readonly string[]): Buffer[] | undefined {
  if (part.encoding === 'base64' || part.encoding === 'quoted-printable') return undefined;
  return searchBytes(part, needles);
}

/**
 * False when the decoded text of `part` surely holds none of `needles`; true
 * when it may (or when this probe cannot tell: see the header).
 */
export async function partMayContain(source: BodySource, part: MimePart, needles: readonly string[]): Promise<boolean> {
  const bytes = searchBytes(part, needles);
  if (!bytes) return true;
  if (bytes.length === 0) return false;
  const keep = Math.max(...bytes.map((b) => b.length)) - 1;
  const decoder = part.encoding === 'base64' ? base64() : part.encoding === 'quoted-printable' ? quotedPrintable() : identity();
  let tail: Buffer = Buffer.alloc(0);
  const found = (decoded: Buffer): boolean => {
    // A needle may straddle two chunks: it is then in the previous chunk's last bytes followed by
    // this one's first, searched on their own instead of copying every chunk behind them.
    const seam = tail.length ? Buffer.concat([tail, decoded.subarray(0, keep)]) : undefined;
    if (bytes.some((b) => decoded.includes(b) || (seam?.includes(b) ?? false))) return true;
    const last = decoded.length >= keep ? decoded : (seam ?? decoded);
    tail = Buffer.from(last.subarray(Math.max(0, last.length - keep)));
    return false;
  };
  const stream = source.stream(part.bodyStart, part.bodyEnd);
  try {
    // Destroyed in finally, without the AbortError (and its stack trace) an early return would make.
    for await (const chunk of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      const decoded = decoder.push(chunk);
      if (decoded === undefined || found(decoded)) return true;
      await nextTurn(); // a large part is many chunks: SMTP and HTTP are served between them
    }
    const last = decoder.end();
    return last === undefined || found(last);
  } finally {
    stream.destroy();
  }
}
