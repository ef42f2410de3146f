/*
 * mime-scan.ts — the MIME structure of a message as byte offsets into its raw
 * bytes, read in one streaming pass.
 *
 * Why our own splitter and not mailparser: mailparser decodes and re-encodes,
 * so a part we did not change would not come out byte-for-byte identical, and
 * it holds attachments in memory. Here each part is only a set of offsets
 * (header block, body start and end); the rewrap rewrites the few parts it
 * changes and copies every other byte range through unchanged.
 *
 * Standards: RFC 2045 (headers, Content-Transfer-Encoding), RFC 2046 5.1
 * (multipart: the CRLF before a delimiter belongs to the delimiter; preamble
 * and epilogue are kept as bytes we never touch; transport padding after a
 * delimiter is allowed). message/rfc822 parts are leaves: we never change
 * what a forwarded message contains.
 * Memory: only header blocks and the current partial line are held; a line
 * longer than MAX_DELIMITER_LINE cannot be a delimiter and is not kept.
 *
 * Hostile input (issue #11): the scan is linear in the message. A line that
 * starts with `--` is first looked up among the open delimiters (one map
 * lookup), and only a real delimiter walks the multipart stack, whose depth is
 * bounded. Nesting deeper than `limits.nesting` (engine.mimeNestingLimit,
 * default 100 like Postfix's mime_nesting_limit) or more than `limits.parts`
 * parts (engine.mimeMaxParts, default 10,000) stops the structure there:
 * the root's `limit` says why, and render.ts rejects the message rather than
 * deliver a structure we did not read. The scan yields the event loop every
 * SCAN_SLICE bytes or LINES_PER_TURN lines, whichever comes first. walkParts
 * is iterative (no recursion over the depth).
 * Config: engine.mimeNestingLimit, engine.mimeMaxParts (passed as `limits`).
 * Side effects: none (reads the given stream).
 */
import type { Readable } from 'node:stream';
import { DEFAULT_MIME_MAX_PARTS, DEFAULT_MIME_NESTING_LIMIT } from '../../common/config.js';
import { getHeader, parseContentType, parseHeaderBlock, type HeaderField } from '../../common/mime-header.js';
import { nextTurn } from '../../common/next-turn.js';

/** RFC 2046 5.1.1: a boundary is at most 70 characters; with "--", "--" and padding a delimiter line is short. */
const MAX_DELIMITER_LINE = 1024;
/** Header blocks larger than this are treated as body (no legitimate part has one). */
const MAX_HEADER_BLOCK = 1024 * 1024;
/** Bytes scanned between two turns of the event loop: a few ms of work, so SMTP and HTTP stay served while a large message is read. */
const SCAN_SLICE = 256 * 1024;
/**
 * Lines scanned between two turns as well. A body of short lines is many lines to a slice: the
 * `--` flood of the hostile-input test (90 nested multiparts, 1 MB of 7-byte `--` lines) is
 * ~37,000 lines in one SCAN_SLICE, each a look-up among the open delimiters, and held the event
 * loop 40–130 ms a slice on this 2-core VM when it was slow (the test's SMTP probe p99 68–134 ms
 * against its 100 ms bound). Ordinary mail (lines up to 78 bytes) reaches SCAN_SLICE first, so
 * only line-dense input yields more often.
 */
export const LINES_PER_TURN = 8192;
/** Header blocks parsed between two turns of the event loop (each costs ~20 µs, more under load: 500 held it 40-170 ms with 5,000 parts). */
const HEADERS_PER_TURN = 100;

export interface MimeLimits {
  /** Multipart levels read (engine.mimeNestingLimit). */
  nesting: number;
  /** Parts read, the message itself included (engine.mimeMaxParts). */
  parts: number;
}

export const DEFAULT_MIME_LIMITS: MimeLimits = Object.freeze({ nesting: DEFAULT_MIME_NESTING_LIMIT, parts: DEFAULT_MIME_MAX_PARTS });

export interface MimePart {
  /** Pre-order index; 0 is the message itself. */
  index: number;
  headerStart: number;
  /** First byte of the body (after the empty line). */
  bodyStart: number;
  /** End of the body (exclusive), before the CRLF that precedes the next delimiter. */
  bodyEnd: number;
  headers: HeaderField[];
  /** Lower-case `type/subtype`. */
  type: string;
  params: Record<string, string>;
  /** Lower-case Content-Transfer-Encoding, `7bit` when absent. */
  encoding: string;
  /** Lower-case disposition type, '' when absent. */
  disposition: string;
  children: MimePart[];
  /** On the root only: why the structure was not read to the end (a MIME limit); the message must not be rewrapped. */
  limit?: string | undefined;
}

interface Multipart {
  part: MimePart;
  delimiter: string;
  current: MimePart | undefined;
  closed: boolean;
}

function newPart(index: number, headerStart: number): MimePart {
  return { index, headerStart, bodyStart: headerStart, bodyEnd: headerStart, headers: [], type: 'text/plain', params: {}, encoding: '7bit', disposition: '', children: [] };
}

/** `line` without its trailing spaces and tabs (transport padding, RFC 2046 5.1.1), as latin1 text: a loop from the end, no pattern. */
function trimPadding(line: Buffer): string {
  let end = line.length;
  while (end > 0 && (line[end - 1] === 0x20 || line[end - 1] === 0x09)) end--;
  return line.toString('latin1', 0, end);
}

/**
 * Reads the structure of a message from its bytes. With `size` (the message's
 * length, when the caller knows it) the scan stops as soon as no more structure
 * can follow: no header block being read and no multipart delimiter open (a
 * single-part message after its header block, a multipart one after its closing
 * delimiter). The rest is body or epilogue up to `size`: not read, so a 10 MB
 * single-part message costs its header block, not 10 MB of reads (issue #17).
 */
export async function scanMime(input: Readable, limits: MimeLimits = DEFAULT_MIME_LIMITS, size?: number): Promise<MimePart> {
  let nextIndex = 1;
  const root = newPart(0, 0);
  const stack: Multipart[] = [];
  /** Delimiters of the multiparts on the stack that are not closed, with how many use each. */
  const open = new Map<string, number>();
  const opened = (d: string, n: number): void => {
    const c = (open.get(d) ?? 0) + n;
    if (c > 0) open.set(d, c);
    else open.delete(d);
  };
  /** Set once a limit is passed: no more structure is read. */
  let stopped = false;
  const stop = (reason: string): void => {
    stopped = true;
    root.limit = reason;
  };
  let inHeaders: MimePart | undefined = root;
  let headerChunks: Buffer[] = [];
  let headerBytes = 0;
  let prevTerm = 0; // length of the previous line's terminator (2 for CRLF)

  let headersSinceTurn = 0;
  const finishHeaders = (part: MimePart, bodyStart: number): void => {
    headersSinceTurn++;
    part.headers = parseHeaderBlock(Buffer.concat(headerChunks));
    headerChunks = [];
    headerBytes = 0;
    part.bodyStart = bodyStart;
    part.bodyEnd = bodyStart;
    const ct = parseContentType(getHeader(part.headers, 'content-type'));
    part.type = ct.value;
    part.params = ct.params;
    part.encoding = (getHeader(part.headers, 'content-transfer-encoding') ?? '7bit').toLowerCase().trim();
    part.disposition = (getHeader(part.headers, 'content-disposition') ?? '').split(';')[0]!.trim().toLowerCase();
    const boundary = ct.params.boundary;
    if (!part.type.startsWith('multipart/') || !boundary || stopped) return;
    if (stack.length >= limits.nesting) return stop(`MIME nesting deeper than ${limits.nesting} levels (engine.mimeNestingLimit)`);
    stack.push({ part, delimiter: `--${boundary}`, current: undefined, closed: false });
    opened(`--${boundary}`, 1);
  };

  const onLine = (line: Buffer | undefined, start: number, next: number, term: number): void => {
    if (inHeaders) {
      const empty = line !== undefined && line.length === 0;
      if (empty) {
        const p = inHeaders;
        inHeaders = undefined;
        finishHeaders(p, next);
      } else if (line !== undefined && headerBytes < MAX_HEADER_BLOCK) {
        headerChunks.push(Buffer.concat([line, Buffer.from(term === 2 ? '\r\n' : '\n')]));
        headerBytes += next - start;
      } else {
        // A header block we will not hold: treat the rest as body.
        const p = inHeaders;
        inHeaders = undefined;
        finishHeaders(p, start);
      }
      prevTerm = term;
      return;
    }
    if (line && line.length >= 2 && line[0] === 0x2d && line[1] === 0x2d && open.size > 0 && !stopped) {
      const text = trimPadding(line);
      if (!open.has(text) && !(text.endsWith('--') && open.has(text.slice(0, -2)))) {
        prevTerm = term;
        return;
      }
      for (let i = stack.length - 1; i >= 0; i--) {
        const mp = stack[i]!;
        if (mp.closed) continue;
        const isEnd = text === `${mp.delimiter}--`;
        if (text !== mp.delimiter && !isEnd) continue;
        const end = Math.max(start - prevTerm, 0);
        // Inner multiparts left open end here.
        for (const inner of stack.splice(i + 1)) {
          if (!inner.closed) opened(inner.delimiter, -1);
          if (inner.current) inner.current.bodyEnd = Math.max(end, inner.current.bodyStart);
          inner.part.bodyEnd = Math.max(end, inner.part.bodyStart);
        }
        if (mp.current) mp.current.bodyEnd = Math.max(end, mp.current.bodyStart);
        if (isEnd) {
          mp.current = undefined;
          mp.closed = true;
          opened(mp.delimiter, -1);
        } else if (nextIndex >= limits.parts) {
          mp.current = undefined;
          stop(`more than ${limits.parts} MIME parts (engine.mimeMaxParts)`);
        } else {
          const child = newPart(nextIndex++, next);
          mp.part.children.push(child);
          mp.current = child;
          inHeaders = child;
        }
        break;
      }
    }
    prevTerm = term;
  };

  let base = 0; // absolute offset of chunk[0]
  let lineStart = 0;
  let carry: Buffer[] = []; // the partial line so far
  let carryLen = 0;
  let tooLong = false; // the partial line is past MAX_DELIMITER_LINE: not kept
  let sliceEnd = SCAN_SLICE; // offset at which the scan next yields the event loop
  let linesSinceTurn = 0;
  /** Nothing later in the message can add a part or a delimiter (see the function's comment). */
  const complete = (): boolean => size !== undefined && inHeaders === undefined && (open.size === 0 || stopped);
  let early = false;
  // destroyOnReturn false, and destroy() below without an error: leaving a for-await of a stream
  // early destroys it with an AbortError, whose stack trace cost ~90 µs per message in a profile of
  // the hosted node (issue #17); the early stop is the common case for single-part mail.
  scan: for await (const chunk of input.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    let pos = 0;
    for (;;) {
      if (base + pos >= sliceEnd || headersSinceTurn >= HEADERS_PER_TURN || linesSinceTurn >= LINES_PER_TURN) {
        sliceEnd = base + pos + SCAN_SLICE;
        headersSinceTurn = 0;
        linesSinceTurn = 0;
        await nextTurn();
      }
      linesSinceTurn++;
      const nl = chunk.indexOf(10, pos);
      if (nl === -1) {
        if (!tooLong && pos < chunk.length) {
          carry.push(chunk.subarray(pos));
          carryLen += chunk.length - pos;
          if (!inHeaders && carryLen > MAX_DELIMITER_LINE) {
            tooLong = true;
            carry = [];
            carryLen = 0;
          }
        }
        break;
      }
      const line = tooLong ? undefined : carry.length ? Buffer.concat([...carry, chunk.subarray(pos, nl)]) : chunk.subarray(pos, nl);
      const cr = line ? line.length > 0 && line[line.length - 1] === 0x0d : nl > pos ? chunk[nl - 1] === 0x0d : true;
      const next = base + nl + 1;
      onLine(line && cr ? line.subarray(0, line.length - 1) : line, lineStart, next, cr ? 2 : 1);
      lineStart = next;
      carry = [];
      carryLen = 0;
      tooLong = false;
      pos = nl + 1;
      if (complete()) {
        early = true;
        input.destroy();
        break scan;
      }
    }
    base += chunk.length;
  }
  const end = early ? size! : base;
  if (!early && (carryLen > 0 || tooLong)) onLine(tooLong ? undefined : Buffer.concat(carry), lineStart, end, 0);
  if (inHeaders) {
    const p: MimePart = inHeaders;
    inHeaders = undefined;
    finishHeaders(p, end);
  }
  for (const mp of stack) {
    if (mp.current) mp.current.bodyEnd = end;
    mp.part.bodyEnd = end;
  }
  root.bodyEnd = end;
  return root;
}

/** The rejection of a message whose structure went over a limit (steps return it before doing any work on the parts), else undefined. */
export function mimeLimitRejection(root: MimePart): { kind: 'rejected'; reason: string } | undefined {
  return root.limit === undefined ? undefined : { kind: 'rejected', reason: `message not rewrapped: ${root.limit}` };
}

/** Every part, pre-order; iterative, so the depth of the tree does not matter to the call stack. */
export function walkParts(root: MimePart): MimePart[] {
  const out: MimePart[] = [];
  const todo: MimePart[] = [root];
  while (todo.length > 0) {
    const p = todo.pop()!;
    out.push(p);
    for (let i = p.children.length - 1; i >= 0; i--) todo.push(p.children[i]!);
  }
  return out;
}
