/*
 * dot-stuffing.ts — SMTP's DATA transparency on the way out (RFC 5321 4.5.2):
 * a line starting with "." gets another one, bare CR and bare LF become CRLF,
 * and the data ends with CRLF "." CRLF. The bytes are nodemailer's (its
 * DataStream, which the relay used until smtp-session.ts): a bare CR followed
 * by a dot becomes CRLF and a stuffed dot, so a receiver that takes a lone CR
 * as a line end cannot see "\r.\r" as the end of the data (SMTP smuggling).
 *
 * Why a fast check first: DataStream looks at every byte in a JavaScript loop,
 * and on a spooled message almost no byte needs a change (lines end in CRLF,
 * few start with a dot). Profiling the forwarder under 100 KB messages put
 * that loop first among all functions (2026-11 note on issue 3). Each chunk is
 * checked in one pass, 16 bytes at a time (line-scan.ts); a chunk that needs
 * no insertion is sent as it is, any other goes through the per-byte loop.
 * test/common/dot-stuffing.test.ts compares both against nodemailer's own
 * DataStream on random input with random chunking.
 *
 * Side effects: none.
 */
import { BARE_NEWLINE, CR, DOT, DOT_AT_LINE_START, LF, lineFlags } from './line-scan.js';

/**
 * True when stuffChunk would insert nothing into `chunk`, given the byte
 * before it (`false` at the start of the message).
 */
export function needsNoStuffing(chunk: Buffer, prev: number | false): boolean {
  if (prev === CR && chunk[0] !== LF) return false; // a bare CR at the end of the last chunk
  if (chunk[0] === DOT && prev === false) return false;
  // The rest, including a dot after an LF that ended the last chunk, in one pass (line-scan.ts).
  return (lineFlags(chunk, prev === false ? 0 : prev) & (BARE_NEWLINE | DOT_AT_LINE_START)) === 0;
}

/**
 * `chunk` as it goes on the wire after byte `prev` (`false` at the start of the message).
 * Two plain loops over the bytes, one to size the result and one to fill it: 10-30 ms a MiB
 * whatever the content (microbenchmark). Collecting the pieces between insertions and concatenating them
 * cost 50-80 ms a MiB with a dot at the start of some lines (a hostile message of issue
 * #11, profiled in the engine's delivery) and 200-600 ms with a break every byte or two.
 */
export function stuffChunk(chunk: Buffer, prev: number | false): Buffer {
  if (chunk.length === 0 || needsNoStuffing(chunk, prev)) return chunk;
  const n = chunk.length;
  const start = prev === false ? -1 : prev; // a number throughout keeps the loops monomorphic
  let extra = 0;
  let before = start;
  for (let i = 0; i < n; i++) {
    const byte = chunk[i]!;
    if (before === CR && byte !== LF) extra += byte === DOT ? 2 : 1;
    else if (byte === LF ? before !== CR : byte === DOT && (before === LF || before === -1)) extra++;
    before = byte;
  }
  // The same three tests as above, written out again: one helper returning what to insert, called
  // from both loops, measured 29-30 ms for 1 MB of dot-led lines against 18-21 (not inlined).
  const out = Buffer.allocUnsafe(n + extra);
  let o = 0;
  before = start;
  for (let i = 0; i < n; i++) {
    const byte = chunk[i]!;
    if (before === CR && byte !== LF) {
      out[o++] = LF;
      if (byte === DOT) out[o++] = DOT;
    } else if (byte === LF ? before !== CR : byte === DOT && (before === LF || before === -1)) {
      out[o++] = byte === LF ? CR : DOT;
    }
    out[o++] = byte;
    before = byte;
  }
  return out;
}

/**
 * stuffChunk for the chunk at `offset` of a body whose bytes from `cleanFrom` on were found to
 * need nothing where they were received (the listener's DATA check: TransactionEnvelope.cleanFrom).
 * Each of them was judged there with the byte before it, which is the same byte here for all but
 * the one at `cleanFrom` (behind a header of the copy's own). So a chunk past it goes as it is, the
 * one that starts there has its first byte judged here, and one that straddles it is stuffed as any
 * other. Why (issue #17): the scan of every byte the hosted node delivers, already scanned as it
 * came in, was 2% of its CPU at 1 MB.
 */
export function stuffChunkAt(chunk: Buffer, prev: number | false, offset: number, cleanFrom: number | undefined): Buffer {
  if (cleanFrom !== undefined && chunk.length > 0) {
    if (offset > cleanFrom) return chunk;
    if (offset === cleanFrom && needsNoStuffing(chunk.subarray(0, 1), prev)) return chunk;
  }
  return stuffChunk(chunk, prev);
}

const END_AFTER_LF = Buffer.from('.\r\n');
const END_AFTER_CR = Buffer.from('\n.\r\n');
const END_ELSEWHERE = Buffer.from('\r\n.\r\n');

/** The end of the data after the message's last byte (`false`: an empty message). */
export function endOfData(last: number | false): Buffer {
  return last === LF ? END_AFTER_LF : last === CR ? END_AFTER_CR : END_ELSEWHERE;
}
