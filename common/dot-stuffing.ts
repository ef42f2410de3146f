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
import { CR, DOT, LF, lineFlags } from './line-scan.js';

const INSERT_LF = Buffer.from('\n');
const INSERT_LF_DOT = Buffer.from('\n.');
const INSERT_CR = Buffer.from('\r');
const INSERT_DOT = Buffer.from('.');

/**
 * True when stuffChunk would insert nothing into `chunk`, given the byte
 * before it (`false` at the start of the message).
 */
export function needsNoStuffing(chunk: Buffer, prev: number | false): boolean {
  if (prev === CR && chunk[0] !== LF) return false; // a bare CR at the end of the last chunk
  if (chunk[0] === DOT && prev === false) return false;
  // The rest, including a dot after an LF that ended the last chunk, in one pass (line-scan.ts).
  return lineFlags(chunk, prev === false ? 0 : prev) === 0;
}

/** `chunk` as it goes on the wire after byte `prev` (`false` at the start of the message). */
export function stuffChunk(chunk: Buffer, prev: number | false): Buffer {
  if (chunk.length === 0 || needsNoStuffing(chunk, prev)) return chunk;
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < chunk.length; i++) {
    const byte = chunk[i]!;
    const before = i > 0 ? chunk[i - 1]! : prev;
    let insert: Buffer | undefined;
    if (before === CR && byte !== LF) insert = byte === DOT ? INSERT_LF_DOT : INSERT_LF;
    else if (byte === LF && before !== CR) insert = INSERT_CR;
    else if (byte === DOT && (before === LF || before === false)) insert = INSERT_DOT;
    if (insert) {
      if (i > from) parts.push(chunk.subarray(from, i));
      parts.push(insert);
      from = i;
    }
  }
  parts.push(chunk.subarray(from));
  return Buffer.concat(parts);
}

const END_AFTER_LF = Buffer.from('.\r\n');
const END_AFTER_CR = Buffer.from('\n.\r\n');
const END_ELSEWHERE = Buffer.from('\r\n.\r\n');

/** The end of the data after the message's last byte (`false`: an empty message). */
export function endOfData(last: number | false): Buffer {
  return last === LF ? END_AFTER_LF : last === CR ? END_AFTER_CR : END_ELSEWHERE;
}
