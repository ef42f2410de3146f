/*
 * smtp-data-feed.ts — smtp-server's DATA parser step (SMTPStream._feedDataStream)
 * with the search for a line-leading dot done by Buffer.indexOf instead of a
 * JavaScript loop over every byte.
 *
 * Why: the loop tested each byte of the body in JavaScript, ~100 µs of the
 * forwarder's main thread per 100 KB message in CPU profiles (and the same
 * again in the listener, ~1 ms per 1 MB message on each hop; issue #17).
 * indexOf('\n.') is a native search, so only the places where a line starts with
 * a dot are looked at in JavaScript, as before.
 *
 * Everything else is smtp-server 3.21.6's method as it is (MIT licence,
 * dist/esm/smtp-stream.js), in the same order, including its defences: the
 * terminator at the very start of DATA is only one while `_atDataStart` holds, an
 * escape dot is removed, the last 4 bytes are kept back so a terminator split
 * across chunks is found. The matches are the same positions the loop found: the
 * first i in [2, len-3] with chunk[i] = '.' and chunk[i-1] = '\n'. Three differences
 * in how, not what. The library copies the kept-back bytes in front of every next
 * chunk; here, when that chunk holds no match (see plainContinuation), they are
 * written out ahead of it as their own piece, with no copy; and when nothing its next
 * scan looks at can start in them (no LF after the first, no CR last: inertTail), they
 * go out with their own chunk, one write instead of two. And the library writes
 * what comes before an escape dot as a chunk of its own and feeds the rest on the
 * next turn; here the escape dots of a read are all removed in one pass and what is
 * between them is written as one chunk: a body of dot-stuffed lines (1 MB of lines
 * that start with a dot, issue #11's hostile input) came out in 250,000 chunks of
 * a few bytes, each a stream write and a turn, and everything downstream paid per
 * chunk (the hosted node's thread held 1.8 s). The bytes that come out are the
 * same: test/common/smtp-data-feed.test.ts feeds the same byte streams, cut into
 * chunks at every position and at random, through this and the library's own
 * method and compares what comes out.
 */
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const DATA_START_END = Buffer.from('.\r\n');
const LF_DOT = Buffer.from('\n.');
/**
 * `_lastBytes` when the 4 bytes the library would keep back went out with their chunk (see
 * inertTail): the next chunk is scanned from its first byte, as the library scans it behind them.
 * An object of our own, so that nothing of the library's mistakes it for kept bytes (it has none).
 */
const INERT_SEAM = Buffer.alloc(0);
/**
 * Kept bytes (fewer than 4: a chunk that short, right after an inert seam) that the library would
 * hold behind the rest of the inert bytes: their first byte is in its next scan's range, so the
 * next scan starts at 0 here too.
 */
const AFTER_INERT = new WeakSet<Buffer>();

type Done = (err?: Error | null) => void;

export function feedDataStream(this: SMTPStream, input: Buffer, done: Done): void {
  let chunk = input;
  const inertSeam = this._lastBytes === INERT_SEAM;
  if (inertSeam) this._lastBytes = false;
  const kept = this._lastBytes;
  /** What the library's chunk would hold in front of this one holds no match (see INERT_SEAM): scan from 0. */
  const fromStart = inertSeam || (kept !== false && AFTER_INERT.has(kept));
  if (kept && kept.length) {
    this._lastBytes = false;
    if (!this._atDataStart && !fromStart && plainContinuation(kept, input)) return emitPlain(this, [kept, input.subarray(0, input.length - 4)], input.subarray(input.length - 4), done);
    chunk = Buffer.concat([kept, chunk], kept.length + chunk.length);
  }
  let len = chunk.length;
  // A terminator at the very start of DATA (see smtp-server's comment on smuggling).
  if (this._atDataStart && len >= 3 && Buffer.compare(chunk.subarray(0, 3), DATA_START_END) === 0) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1);
    len--;
    this._atDataStart = false;
  }
  /** Positions of the escape dots removed so far. */
  const escapes: number[] = [];
  const upTo = (end: number): Buffer => (escapes.length ? withoutEscapes(chunk, escapes, end) : chunk.subarray(0, end));
  // p is the index of the '\n' before a dot at i = p + 1; the loop's range i in [2, len - 3]. After an
  // escape dot at i the library scans the rest from i + 1 as a new chunk: its range, and the bytes of
  // each terminator check, are the same positions of this one (the next match is at i + 2 or later).
  // Behind an inert seam the library's chunk would start with the 4 kept bytes: a '\n.' at 0 here is
  // at 4 there, in its range; the kept bytes hold no LF and do not end in CR (inertTail), so no
  // match starts in them and no terminator takes them in (chunk[-1] below is never CR).
  for (let p = chunk.indexOf(LF_DOT, fromStart ? 0 : 1); p !== -1 && p < len - 3; p = chunk.indexOf(LF_DOT, p + 1)) {
    const i = p + 1;
    // chunk[i - 1] is the LF and chunk[i] the dot: the rest of CRLF "." CRLF byte by byte (every dot-stuffed line gets here).
    if (chunk[i - 2] === 0x0d && chunk[i + 1] === 0x0d && chunk[i + 2] === 0x0a) {
      const buf = upTo(i);
      this._countDataBytes(buf.length);
      this._endDataMode(buf, chunk.subarray(i + 3), done);
      return;
    }
    if (chunk[i + 1] === 0x2e) escapes.push(i);
  }
  if (escapes.length) {
    // The library's last pass over the rest after the last escape dot keeps its last 4 bytes back (all of a shorter rest).
    const tail = Math.max(escapes[escapes.length - 1]! + 1, len - 4);
    return emitPlain(this, [upTo(tail)], chunk.subarray(tail), done);
  }
  // Nothing to emit before the kept-back bytes: go on with the input.
  if (chunk.length <= 4) {
    this._lastBytes = chunk;
    // Four bytes: the library looked at the first in this round (its range ends at len - 3). Fewer: not yet.
    if (fromStart && chunk.length < 4) AFTER_INERT.add(chunk);
    return done();
  }
  emitPlain(this, [chunk.subarray(0, chunk.length - 4)], chunk.subarray(chunk.length - 4), done);
}

/** `chunk` up to `end` without the bytes at `escapes` (ascending, all before `end`), in one new buffer. */
function withoutEscapes(chunk: Buffer, escapes: number[], end: number): Buffer {
  const out = Buffer.allocUnsafe(end - escapes.length);
  let o = 0;
  let from = 0;
  for (const at of escapes) {
    o += chunk.copy(out, o, from, at);
    from = at + 1;
  }
  chunk.copy(out, o, from, end);
  return out;
}

/**
 * Whether `kept + input` (the chunk the library would build) holds no line-leading dot the scan
 * looks at (a '\n.' at p in [1, length - 4]) and no start-of-DATA case applies: then the scan
 * would emit all of it but its last 4 bytes, which `emitPlain` does without copying `input` behind
 * `kept` (a 64 KiB copy per read, ~5% of the forwarder's main thread receiving 1 MB bodies; issue
 * #17). Anything else, rare on the wire (a dot-stuffed line, the terminator, a bare LF before a
 * dot), goes through the copy and the scan as before.
 */
function plainContinuation(kept: Buffer, input: Buffer): boolean {
  if (input.length < 4) return false;
  const at = (k: number): number => (k < kept.length ? kept[k]! : input[k - kept.length]!);
  // Pairs that start in the kept bytes or at the seam (p <= kept.length); input has >= 2 bytes past it.
  for (let p = 1; p <= kept.length; p++) if (at(p) === 0x0a && at(p + 1) === 0x2e) return false;
  const q = input.indexOf(LF_DOT, 1);
  return q === -1 || q >= input.length - 3;
}

/**
 * Whether the 4 bytes kept back after `last` can go out with it instead of ahead of the next
 * chunk: they lie right behind it in memory (so the two are one view, no copy), and nothing the
 * library's next scan looks at starts in them. It looks at a '\n.' whose LF is at kept[1..3] or
 * later (kept[0]'s was looked at in this chunk, at len - 3), and at a terminator whose CR LF may
 * start at kept[3]: so no LF in kept[1..3] and no CR at kept[3]. A text chunk cut mid-line, the
 * usual TLS record, qualifies: the kept-back piece was a 4-byte write of its own through every
 * stream stage downstream, once per 16 KiB (issue #17).
 */
function inertTail(last: Buffer, tail: Buffer): boolean {
  return (
    tail.length === 4 &&
    tail.buffer === last.buffer &&
    tail.byteOffset === last.byteOffset + last.length &&
    tail[1] !== 0x0a &&
    tail[2] !== 0x0a &&
    tail[3] !== 0x0a &&
    tail[3] !== 0x0d
  );
}

/** Emits `parts` (which hold no terminator) and keeps `tail` back, as the end of the library's scan. */
function emitPlain(stream: SMTPStream, parts: Buffer[], tail: Buffer, done: Done): void {
  const dataStream = stream._dataStream!;
  const last = parts[parts.length - 1]!;
  if (inertTail(last, tail)) {
    parts[parts.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + tail.length);
    tail = INERT_SEAM;
  }
  stream._lastBytes = tail;
  let bytes = 0;
  for (const part of parts) bytes += part.length;
  stream._countDataBytes(bytes);
  if (!dataStream.writable) return done();
  let flowing = true;
  for (const part of parts) if (part.length) flowing = dataStream.write(part);
  // Stop reading until the reader drains (a stream the application destroyed never drains, it only closes).
  if (flowing || dataStream.destroyed) return done();
  const onDrain = (): void => {
    dataStream.removeListener('drain', onDrain);
    dataStream.removeListener('close', onDrain);
    done();
  };
  dataStream.once('drain', onDrain);
  dataStream.once('close', onDrain);
}
