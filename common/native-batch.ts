/*
 * native-batch.ts — LevelDB write batches filled in place and reused, for store.ts (issue #17).
 *
 * Why: classic-level's one-call batch (`_batch`, the binding's batch_do) reads every op's
 * `type`, `key` and `value` through N-API property look-ups (each a name string made and
 * looked up, a has- and a get-call per property) and builds a new WriteBatch per call that
 * grows by reallocation. In CPU profiles of `postino up` at 100 KB and of the forwarder at
 * `-d` that call was 8–9% of each process's main thread (about 0.35 batches and ~9 ops a
 * message in the forwarder, ~37 ops in the hosted node). Filling a batch through the calls
 * classic-level's own ChainedBatch makes (batch_put / batch_del: the key and value as plain
 * arguments) into one native batch that is cleared and reused took the call, on this 2-core
 * VM with the allocator settings `postino up` uses (microbenchmark, 300 batches each): 110
 * small ops 40–61 µs against 135–190 µs, 4 × 100 KB values and 106 small ops 110–180 against
 * 268–455 µs, 4 ops 7–9 against 11–12 µs. What LevelDB writes is the same WriteBatch either
 * way, under the same `sync` option.
 *
 * How it stays safe, since this reaches under classic-level's public API (store.ts already
 * calls `_batch`; classic-level is pinned to an exact version in package.json):
 *   - the binding and the database's native context are looked up once; when either is not
 *     where classic-level 3.0 keeps it, `nativeBatchWriter` answers undefined and the store
 *     keeps `_batch` (test/common/native-batch.test.ts fails then, so an upgrade is noticed);
 *   - a writer reuses its batch only when no write of it is in flight: LevelDB reads the batch
 *     on a thread-pool thread until the write's promise settles (the store runs one synced and
 *     one unsynced write at a time, one writer each; anything else gets a batch of its own);
 *   - callers write only while the database is open (store.ts `write`), as for `_batch`: the
 *     native write assumes an open database, and closing waits for writes in flight;
 *   - a batch that held more than RETAIN_MAX_BYTES is dropped after its write (the garbage
 *     collector frees it), so one large group does not keep its memory for good.
 *
 * Side effects: none of its own; the writes are LevelDB's.
 */
import { createRequire } from 'node:module';
import type { ClassicLevel } from 'classic-level';
import type { BatchOp } from './store.js';

/** A native batch: an N-API external owned by the binding. */
type NativeBatch = object;

/** The chained-batch functions of classic-level 3.0's binding (binding.cc), as its chained-batch.js calls them. */
interface Binding {
  batch_init(dbContext: object): NativeBatch;
  batch_put(batch: NativeBatch, key: string, value: Buffer): void;
  batch_del(batch: NativeBatch, key: string): void;
  batch_clear(batch: NativeBatch): void;
  batch_write(batch: NativeBatch, options: { sync: boolean }): Promise<void>;
}

/**
 * Bytes (keys and values) past which a batch is not kept for the next write. A group of
 * inline bodies is at most a few MiB (store.ts takes riders up to 1 MiB; bodies up to 256 KiB
 * inline, durable-queue.ts), so most batches are reused; a rare larger one is given back.
 */
export const RETAIN_MAX_BYTES = 4 * 1024 * 1024;

const SYNC = Object.freeze({ sync: true });
const NO_SYNC = Object.freeze({ sync: false });

export interface NativeBatchWriter {
  /** Writes `ops` as one atomic LevelDB batch; resolves when LevelDB has written it (with `sync`, fsynced). */
  write(ops: readonly BatchOp[], sync: boolean): Promise<void>;
}

let loaded: Binding | null | undefined;

function binding(): Binding | undefined {
  if (loaded === undefined) {
    try {
      // The same module classic-level's index.js loaded (one cached instance of the addon).
      const b = createRequire(import.meta.url)('classic-level/binding.js') as Partial<Binding>;
      const fns = ['batch_init', 'batch_put', 'batch_del', 'batch_clear', 'batch_write'] as const;
      loaded = fns.every((f) => typeof b[f] === 'function') ? (b as Binding) : null;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}

/** The database's native context: classic-level keeps it under its own `Symbol('context')`. */
function nativeContext(db: ClassicLevel<string, Buffer>): object | undefined {
  const sym = Object.getOwnPropertySymbols(db).filter((s) => s.description === 'context');
  if (sym.length !== 1) return undefined;
  const ctx: unknown = (db as unknown as Record<symbol, unknown>)[sym[0]!];
  return typeof ctx === 'object' && ctx !== null ? ctx : undefined;
}

/**
 * A writer for `db` that fills and reuses one native batch (see the header), or undefined
 * when classic-level does not look as expected (the caller then uses `_batch`).
 */
export function nativeBatchWriter(db: ClassicLevel<string, Buffer>): NativeBatchWriter | undefined {
  const b = binding();
  const ctx = nativeContext(db);
  if (!b || !ctx) return undefined;
  // The first batch, made now, also proves the context is a database's before any write relies on it.
  let kept: NativeBatch | undefined;
  try {
    kept = b.batch_init(ctx);
  } catch {
    return undefined;
  }
  let busy = false;
  return {
    async write(ops, sync) {
      // A second write while one is in flight never shares its batch (see the header).
      const own = busy;
      const batch = own ? b.batch_init(ctx) : (kept ??= b.batch_init(ctx));
      if (!own) busy = true;
      let bytes = 0;
      try {
        b.batch_clear(batch);
        for (let i = 0; i < ops.length; i++) {
          const op = ops[i]!;
          if (op.type === 'put') {
            b.batch_put(batch, op.key, op.value);
            bytes += op.key.length + op.value.length;
          } else {
            b.batch_del(batch, op.key);
            bytes += op.key.length;
          }
        }
        await b.batch_write(batch, sync ? SYNC : NO_SYNC);
      } finally {
        if (!own) {
          busy = false;
          if (bytes > RETAIN_MAX_BYTES) kept = undefined;
        }
      }
    },
  };
}
