/*
 * quoted-printable.ts — RFC 2045 6.7 quoted-printable, both ways, for the text
 * parts the rewrap changes (mime-text.ts).
 *
 * The encoder is one pass over the bytes into one buffer: rules 1-5 (literal
 * 33-60 and 62-126, space and tab literal unless they end a line, CRLF as the
 * hard line break, encoded lines of at most 76 characters with `=` as the soft
 * break). A soft break never falls inside an =XX sequence or a UTF-8 sequence
 * (readers that show the raw part, and decoders that decode line by line, see
 * whole characters). Every copy of a tracked message re-encodes its HTML part
 * (its links carry the copy's tokens): nodemailer's encode and its wrap (a few
 * regular expressions and substrings per encoded line) took 7% of such a copy's
 * rewrap (issue #17).
 * A lone CR or LF (not a CRLF pair) is written as =0D or =0A: it is data, and
 * a line break would change it (mime-text.ts gives only CRLF pairs anyway).
 * Side effects: none.
 */
import { nextTurn } from '../../common/next-turn.js';

/** RFC 2045 6.7 rule 5: encoded lines are at most 76 characters (the soft break's `=` included). */
export const QP_LINE = 76;

/** Input bytes encoded between two turns of the event loop (a 2 MB part took ~100 ms in one go with nodemailer's encoder). */
const QP_SLICE = 64 * 1024;

/** 1 for the octets written as themselves (rule 2); space and tab are decided by what follows them. */
const LITERAL = new Uint8Array(256);
for (let c = 33; c <= 126; c++) if (c !== 0x3d) LITERAL[c] = 1;

const HEX = Buffer.from('0123456789ABCDEF', 'latin1');

/** Hex digit value of an octet, or -1. */
const HEX_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUE['0123456789ABCDEF'.charCodeAt(i)] = i;
  HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;
}

/** Octets of the UTF-8 sequence starting at `i` (1 when bytes[i] does not start a well-formed multi-byte one). */
function utf8Length(bytes: Buffer, i: number): number {
  const c = bytes[i]!;
  const n = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 1;
  for (let k = 1; k < n; k++) if (i + k >= bytes.length || (bytes[i + k]! & 0xc0) !== 0x80) return 1;
  return n;
}

/** True when position `i` ends a line: the end of the input or a CRLF there. */
function endsLine(bytes: Buffer, i: number): boolean {
  return i >= bytes.length || (bytes[i] === 0x0d && bytes[i + 1] === 0x0a);
}

/** Where an encoding stands between two slices of its input. */
interface QpState {
  out: Buffer;
  pos: number;
  /** Characters on the current encoded line. */
  col: number;
  /** Index up to which the current UTF-8 sequence was already fitted on this line. */
  fitted: number;
}

/** Encodes bytes[from, to) (a CRLF pair or a UTF-8 sequence may run past `to`: it is taken whole). Returns where it stopped. */
function encodeSlice(bytes: Buffer, from: number, to: number, s: QpState): number {
  const { out } = s;
  let { pos, col, fitted } = s;
  let i = from;
  for (; i < to; i++) {
    const c = bytes[i]!;
    // Most octets of a text: written as they are, on a line with room for them and a soft break.
    if (LITERAL[c] === 1 && col < QP_LINE - 2) {
      out[pos++] = c;
      col++;
      continue;
    }
    if (c === 0x0d && bytes[i + 1] === 0x0a) {
      out[pos++] = 0x0d;
      out[pos++] = 0x0a;
      i++;
      col = 0;
      continue;
    }
    const literal = LITERAL[c] === 1 || ((c === 0x20 || c === 0x09) && !endsLine(bytes, i + 1));
    if (i >= fitted) {
      // What must stay on one line from here: this octet, or the whole UTF-8 sequence it starts.
      const n = literal ? 1 : utf8Length(bytes, i);
      const width = literal ? 1 : 3 * n;
      // A line that ends after it may be 76 long; otherwise 75 leaves room for the soft break's `=`.
      if (col > 0 && col + width > (endsLine(bytes, i + n) ? QP_LINE : QP_LINE - 1)) {
        out[pos++] = 0x3d;
        out[pos++] = 0x0d;
        out[pos++] = 0x0a;
        col = 0;
      }
      fitted = i + n;
    }
    if (literal) {
      out[pos++] = c;
      col++;
    } else {
      out[pos++] = 0x3d;
      out[pos++] = HEX[c >> 4]!;
      out[pos++] = HEX[c & 15]!;
      col += 3;
    }
  }
  s.pos = pos;
  s.col = col;
  s.fitted = fitted;
  return i;
}

/** The bytes as quoted-printable, with a turn of the event loop after every QP_SLICE of them. */
export async function encodeQuotedPrintable(bytes: Buffer): Promise<Buffer> {
  const len = bytes.length;
  // At most three characters an octet, and a soft break (3) per line of at least 64 characters
  // (75 less a UTF-8 sequence of 12 moved to the next line), so of at least 21 octets.
  const s: QpState = { out: Buffer.allocUnsafe(len * 3 + (Math.ceil(len / 16) + 1) * 3), pos: 0, col: 0, fitted: 0 };
  for (let i = encodeSlice(bytes, 0, Math.min(len, QP_SLICE), s); i < len; ) {
    await nextTurn();
    i = encodeSlice(bytes, i, Math.min(len, i + QP_SLICE), s);
  }
  // Mostly literal text uses a third of the room: keep only what was written.
  return Buffer.from(s.out.subarray(0, s.pos));
}

/** Decodes quoted-printable leniently, as RFC 2045 6.7's notes advise a robust decoder: an `=` that starts no escape or soft break is kept as it is, lower-case hex is read. */
export function decodeQuotedPrintable(raw: Buffer): Buffer {
  const out = Buffer.allocUnsafe(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== 0x3d) {
      out[n++] = c;
      continue;
    }
    // "=" then CRLF (or LF, or white space then CRLF): a soft line break.
    let j = i + 1;
    while (j < raw.length && (raw[j] === 0x20 || raw[j] === 0x09)) j++;
    if (raw[j] === 0x0d && raw[j + 1] === 0x0a) {
      i = j + 1;
      continue;
    }
    if (raw[j] === 0x0a) {
      i = j;
      continue;
    }
    const hi = i + 2 < raw.length ? HEX_VALUE[raw[i + 1]!]! : -1;
    const lo = hi >= 0 ? HEX_VALUE[raw[i + 2]!]! : -1;
    if (lo >= 0) {
      out[n++] = (hi << 4) | lo;
      i += 2;
    } else out[n++] = c;
  }
  return out.subarray(0, n);
}
