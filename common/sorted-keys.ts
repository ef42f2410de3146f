/*
 * sorted-keys.ts — an ordered set of strings in memory: add, delete, the first
 * key, and the first keys below a bound, in the order LevelDB sorts them.
 *
 * Why: durable-queue.ts keeps its due index (`<due>!<id>`) in memory so that a
 * lease needs no LevelDB iterator (see there). The keys are held in sorted
 * chunks of at most CHUNK_MAX: add and delete are a binary search over the
 * chunks, one within a chunk and a splice of at most CHUNK_MAX entries, where
 * one sorted array would move every later key on each insert (100,000 keys).
 * Queue keys are ASCII, so JavaScript's `<` (UTF-16 code units) and LevelDB's
 * bytewise order agree.
 *
 * Side effects: none.
 */

/** A chunk past this splits in two: small enough for cheap splices, large enough for a short chunk list. */
const CHUNK_MAX = 1024;

export class SortedKeys {
  private chunks: string[][] = [];
  private count = 0;

  /** From keys already in ascending order without duplicates (a LevelDB scan). */
  static fromSorted(keys: readonly string[]): SortedKeys {
    const s = new SortedKeys();
    for (let i = 0; i < keys.length; i += CHUNK_MAX / 2) s.chunks.push(keys.slice(i, i + CHUNK_MAX / 2));
    s.count = keys.length;
    return s;
  }

  get size(): number {
    return this.count;
  }

  /** Index of the first chunk whose last key is ≥ key (chunks.length when none). */
  private chunkOf(key: string): number {
    let lo = 0;
    let hi = this.chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.chunks[mid]!;
      if (c[c.length - 1]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private static lowerBound(a: readonly string[], key: string): number {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  has(key: string): boolean {
    const c = this.chunks[this.chunkOf(key)];
    return c !== undefined && c[SortedKeys.lowerBound(c, key)] === key;
  }

  /** False when the key was there already. */
  add(key: string): boolean {
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      this.count = 1;
      return true;
    }
    const ci = Math.min(this.chunkOf(key), this.chunks.length - 1);
    const c = this.chunks[ci]!;
    const i = SortedKeys.lowerBound(c, key);
    if (c[i] === key) return false;
    c.splice(i, 0, key);
    this.count++;
    if (c.length > CHUNK_MAX) this.chunks.splice(ci + 1, 0, c.splice(c.length >>> 1));
    return true;
  }

  /** False when the key was not there. */
  delete(key: string): boolean {
    const ci = this.chunkOf(key);
    const c = this.chunks[ci];
    if (!c) return false;
    const i = SortedKeys.lowerBound(c, key);
    if (c[i] !== key) return false;
    c.splice(i, 1);
    this.count--;
    if (c.length === 0) this.chunks.splice(ci, 1);
    return true;
  }

  first(): string | undefined {
    return this.chunks[0]?.[0];
  }

  /** Up to `max` keys < `bound`, in order. */
  below(bound: string, max: number): string[] {
    const out: string[] = [];
    for (const c of this.chunks) {
      for (const k of c) {
        if (out.length >= max || k >= bound) return out;
        out.push(k);
      }
    }
    return out;
  }
}
