/* Seeded randomness for property tests: a failing case can be replayed from its seed. */

/** mulberry32: a small, fast 32-bit PRNG; returns numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cuts `text` into consecutive pieces of `size()` characters (at least 1). */
export function randomChunks(text: string, size: () => number): string[] {
  const chunks: string[] = [];
  for (let at = 0; at < text.length; ) {
    const n = Math.max(1, size());
    chunks.push(text.slice(at, at + n));
    at += n;
  }
  return chunks;
}
