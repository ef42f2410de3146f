/*
 * line-scan.ts — whether a chunk of message bytes holds a bare CR, a bare LF, or a
 * line that starts with a dot, looked at 16 bytes at a time (WebAssembly SIMD).
 *
 * And whether it holds `{{`, the opening of a merge tag: the listener's check asks it in
 * the same pass, so that the rewrap need not read a large part again only to find that it
 * holds none (engine/rewrap/context.ts mayContain; issue #17).
 *
 * Why: the strict DATA check of the listener (strict-data.ts) and the dot-stuffing
 * fast path of every relay hop (dot-stuffing.ts) asked that of each chunk with two
 * Buffer#indexOf calls per line: ~0.4 ms per MiB of 78-octet lines for each, on
 * every byte the hosted node takes and every byte each hop sends (issue #17).
 * Clean chunks are the rule, so a yes/no over the whole chunk is what is wanted;
 * the callers keep their exact per-line walks for the chunks this says are not clean.
 *
 * The module, as WebAssembly text (assembled below; `scan(len)` over memory that
 * holds the byte before the chunk at 15 and the chunk from 16):
 *
 *   (func (export "scan") (param $len i32) (result i32)
 *     (local $i i32) (local $end i32) (local $bare v128) (local $dot v128) (local $v v128) (local $prev v128) (local $brace v128)
 *     i = 16; end = 16 + len
 *     (block (br_if 0 (i32.eqz $len))
 *       (loop
 *         v = v128.load(i); prev = v128.load(i - 1)          ;; next = v128.load offset=1 (i)
 *         bare |= (v == CR) & ~(next == LF)  |  (v == LF) & ~(prev == CR)
 *         dot  |= (v == '.') & (prev == LF)
 *         brace |= (v == '{') & (prev == '{')
 *         i += 16; br_if 0 (i < end)))
 *     any_true(bare) | any_true(dot) << 1 | any_true(brace) << 2)
 *
 * Lanes past the chunk read padding: zeros, and an LF after a final CR, so a CR
 * that ends the chunk is not called bare here (the next chunk's first byte decides;
 * the callers keep that state). Nothing is allocated per call: the chunk is copied
 * into the module's memory (one memcpy), which grows to the largest chunk seen.
 *
 * Side effects: none (one WebAssembly instance per process, made on import).
 */

export const CR = 0x0d;
export const LF = 0x0a;
export const DOT = 0x2e;
export const LBRACE = 0x7b;

/** scan()'s bits. */
export const BARE_NEWLINE = 1;
export const DOT_AT_LINE_START = 2;
export const DOUBLE_BRACE = 4;

/** Offset of the chunk in the module's memory; the byte before it is at DATA - 1. */
const DATA = 16;
/** Padding after the chunk: the last 16-byte load starts at most at its last byte, plus one. */
const PAD = 32;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, bytes: number[]): number[] {
  return [id, ...uleb(bytes.length), ...bytes];
}

const SIMD = 0xfd;
const op = {
  localGet: (i: number) => [0x20, i],
  localSet: (i: number) => [0x21, i],
  localTee: (i: number) => [0x22, i],
  i32Const: (n: number) => [0x41, n], // small non-negative constants only (one LEB byte)
  /** v128.load with byte alignment and a constant offset. */
  load: (offset: number) => [SIMD, 0x00, 0x00, offset],
  splat: (b: number) => [SIMD, 0x0c, ...new Array<number>(16).fill(b)],
  eq: [SIMD, 0x23],
  and: [SIMD, 0x4e],
  andnot: [SIMD, 0x4f],
  or: [SIMD, 0x50],
  anyTrue: [SIMD, 0x53],
};

function assemble(): Uint8Array<ArrayBuffer> {
  const [len, i, end, bare, dot, v, prev, brace] = [0, 1, 2, 3, 4, 5, 6, 7];
  const code = [
    ...op.i32Const(DATA), ...op.localSet(i),
    ...op.localGet(len), ...op.i32Const(DATA), 0x6a /* i32.add */, ...op.localSet(end),
    0x02, 0x40, // block
    ...op.localGet(len), 0x45 /* i32.eqz */, 0x0d, 0x00, // br_if 0
    0x03, 0x40, // loop
    ...op.localGet(i), ...op.load(0), ...op.localSet(v),
    ...op.localGet(i), ...op.i32Const(1), 0x6b /* i32.sub */, ...op.load(0), ...op.localSet(prev),
    ...op.localGet(bare),
    ...op.localGet(v), ...op.splat(CR), ...op.eq,
    ...op.localGet(i), ...op.load(1), ...op.splat(LF), ...op.eq,
    ...op.andnot,
    ...op.localGet(v), ...op.splat(LF), ...op.eq,
    ...op.localGet(prev), ...op.splat(CR), ...op.eq,
    ...op.andnot,
    ...op.or, ...op.or, ...op.localSet(bare),
    ...op.localGet(dot),
    ...op.localGet(v), ...op.splat(DOT), ...op.eq,
    ...op.localGet(prev), ...op.splat(LF), ...op.eq,
    ...op.and, ...op.or, ...op.localSet(dot),
    ...op.localGet(brace),
    ...op.localGet(v), ...op.splat(LBRACE), ...op.eq,
    ...op.localGet(prev), ...op.splat(LBRACE), ...op.eq,
    ...op.and, ...op.or, ...op.localSet(brace),
    ...op.localGet(i), ...op.i32Const(16), 0x6a /* i32.add */, ...op.localTee(i),
    ...op.localGet(end), 0x49 /* i32.lt_u */, 0x0d, 0x00, // br_if 0
    0x0b, // end loop
    0x0b, // end block
    ...op.localGet(bare), ...op.anyTrue,
    ...op.localGet(dot), ...op.anyTrue, ...op.i32Const(1), 0x74 /* i32.shl */,
    0x72, // i32.or
    ...op.localGet(brace), ...op.anyTrue, ...op.i32Const(2), 0x74 /* i32.shl */,
    0x72, // i32.or
    0x0b, // end func
  ];
  const locals = [0x02, 0x02, 0x7f /* 2 × i32 */, 0x05, 0x7b /* 5 × v128 */];
  const body = [...locals, ...code];
  const name = (s: string): number[] => [s.length, ...Buffer.from(s, 'latin1')];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f]), // type: (i32) -> i32
    ...section(3, [0x01, 0x00]), // function 0 has type 0
    ...section(5, [0x01, 0x00, 0x02]), // one memory, 2 pages to start
    ...section(7, [0x02, ...name('scan'), 0x00, 0x00, ...name('mem'), 0x02, 0x00]),
    ...section(10, [0x01, ...uleb(body.length), ...body]),
  ]);
}

const instance = new WebAssembly.Instance(new WebAssembly.Module(assemble()));
const scan = instance.exports.scan as (len: number) => number;
const memory = instance.exports.mem as WebAssembly.Memory;
let view = new Uint8Array(memory.buffer);

/**
 * BARE_NEWLINE, DOT_AT_LINE_START and DOUBLE_BRACE bits for `chunk`, given the byte
 * before it (`prev`; 0 at the start of a message): a CR not followed by LF (except one
 * that ends the chunk), an LF not preceded by CR (`prev` counts for the first byte), a
 * dot right after an LF (`prev` counts: a dot at 0 after an LF is at a line start), a
 * `{` right after a `{` (`prev` counts too).
 */
export function lineFlags(chunk: Uint8Array, prev: number): number {
  const n = chunk.length;
  if (n === 0) return 0;
  if (DATA + n + PAD > view.length) {
    memory.grow(Math.ceil((DATA + n + PAD - view.length) / 65536));
    view = new Uint8Array(memory.buffer);
  }
  view[DATA - 1] = prev;
  view.set(chunk, DATA);
  view.fill(0, DATA + n, DATA + n + PAD);
  if (chunk[n - 1] === CR) view[DATA + n] = LF;
  return scan(n);
}
