/*
 * dot-stuffing.ts — a fast path for nodemailer's DataStream, the transform
 * that applies SMTP's DATA transparency on the way out (RFC 5321 4.5.2: a
 * line starting with "." gets another one; bare CR and bare LF become CRLF).
 *
 * DataStream looks at every byte in a JavaScript loop. On a spooled message
 * almost no byte needs a change: lines end in CRLF and few start with a dot.
 * Profiling the forwarder under 100 KB messages put that loop first among all
 * functions, ahead of parsing (2026-11 note on issue 3). Here each chunk is
 * first checked in one pass, 16 bytes at a time (line-scan.ts; it was a
 * Buffer#indexOf walk over line ends, ~6 times slower); a chunk
 * that needs no insertion is passed on as it is, and any other chunk goes to
 * nodemailer's own code, so the bytes on the wire cannot differ from what
 * nodemailer would send. test/common/dot-stuffing.test.ts compares both on
 * random input with random chunking, which also catches a nodemailer upgrade
 * that changes DataStream's fields.
 *
 * `nodemailer/lib/*` is a public export of the package; DataStream is what
 * every SMTPConnection pipes message bytes through.
 *
 * Side effects: none on import. installDotStuffingFastPath() replaces
 * DataStream.prototype._transform (process-wide; idempotent); the composition
 * root calls it at start-up (app/forwarder.ts, app/hosted.ts), before any
 * SMTP client session exists.
 */
import type { TransformCallback } from 'node:stream';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import { CR, DOT, LF, lineFlags } from './line-scan.js';

type Transform = (this: DataStream, chunk: unknown, encoding: BufferEncoding, done: TransformCallback) => void;

/** nodemailer's own per-byte transform: the fallback, and the reference in tests. */
export const nodemailerTransform = (DataStream.prototype as unknown as { _transform: Transform })._transform;

/**
 * True when DataStream would insert nothing into `chunk`, given the byte
 * before it (`false` at the start of the message).
 */
export function needsNoStuffing(chunk: Buffer, prev: number | false): boolean {
  if (prev === CR && chunk[0] !== LF) return false; // a bare CR at the end of the last chunk
  if (chunk[0] === DOT && prev === false) return false;
  // The rest, including a dot after an LF that ended the last chunk, in one pass (line-scan.ts).
  return lineFlags(chunk, prev === false ? 0 : prev) === 0;
}

function fastTransform(this: DataStream, chunk: unknown, encoding: BufferEncoding, done: TransformCallback): void {
  if (!Buffer.isBuffer(chunk) || chunk.length === 0 || !needsNoStuffing(chunk, this.lastByte)) {
    nodemailerTransform.call(this, chunk, encoding, done);
    return;
  }
  this.inByteCount += chunk.length;
  this.outByteCount += chunk.length;
  this.lastByte = chunk[chunk.length - 1]!;
  this.push(chunk);
  done();
}

/** Puts the fast path in front of nodemailer's DataStream transform; a second call changes nothing. */
export function installDotStuffingFastPath(): void {
  (DataStream.prototype as unknown as { _transform: Transform })._transform = fastTransform;
}
