/*
 * random-pool.ts — random bytes for ids and salts, drawn from one pooled
 * buffer instead of a `crypto.randomBytes` call each.
 *
 * Why: every message takes several (its queue ids, each event's id, each
 * unsubscribe token's salt), and each `randomBytes` call is a trip into
 * OpenSSL for a few bytes (~1.4% of the hosted process in CPU profiles of
 * `postino up`, issue #17). The pool is filled with `randomFillSync` (the same
 * CSPRNG) POOL_BYTES at a time and every byte is handed out once, so the
 * values are exactly as random and as unique as before.
 *
 * Side effects: none beyond the process's CSPRNG.
 */
import { randomFillSync } from 'node:crypto';

/** 4 KiB: a few hundred ids per refill, a page of memory. */
const POOL_BYTES = 4096;

const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** `n` (≤ POOL_BYTES) fresh random bytes as a view into the pool: use them before the next call. */
function take(n: number): Buffer {
  if (n > POOL_BYTES) throw new RangeError(`random-pool: ${n} bytes is more than the pool holds`);
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = pool.subarray(offset, offset + n);
  offset += n;
  return out;
}

/** `n` random bytes, hex-encoded. */
export function randomHex(n: number): string {
  return take(n).toString('hex');
}

/** `n` random bytes, base64url-encoded. */
export function randomBase64url(n: number): string {
  return take(n).toString('base64url');
}

/** `n` random bytes in a Buffer of their own (a salt that outlives the call). */
export function randomBuffer(n: number): Buffer {
  return Buffer.from(take(n));
}
