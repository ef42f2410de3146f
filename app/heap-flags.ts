/*
 * heap-flags.ts — the V8 heap setting the processes `postino up` starts run with.
 *
 * Why (issue #17): a Postino process keeps a small live heap (~22 MB), so V8
 * sets a small old-generation limit (46–58 MB measured), and (most likely) the
 * Buffers every message passes through (socket and TLS chunks, the joined body,
 * LevelDB's copies) count towards it: the hosted node ran a major GC every ~100 messages
 * at 100 KB, and V8's concurrent marking was 15% of its CPU (perf). An initial
 * old space of 128 MB keeps the limit above that churn. Measured with
 * `npm run bench -- pipeline` at 100 KB, interleaved pairs of runs: CPU per
 * 1,000 messages 5.7–6.1 → 4.8–5.3 s one per connection and 4.7–5.0 → 4.2–4.6 s
 * with reused connections in a quiet set (end to end +10–13%), about 8% less
 * over nine pairs; at 2 KB no change in CPU. The cost:
 * garbage may grow further before a major GC (peak RSS +10–17 MiB per process
 * in `bench -- big-messages`, still flat from 10 to 100 messages at once; the
 * forwarder's +47 MiB over the 20,000 messages of `bench -- forwarder`).
 *
 * A command-line flag, not an environment variable: Node refuses it in
 * NODE_OPTIONS. The systemd units and the Containerfile pass the same flag
 * (test/deploy/). A flag the operator gives node comes after these and wins.
 */

/** Flags for `node` before the script, in every supported way of starting Postino. */
export const V8_HEAP_FLAGS: readonly string[] = ['--initial-old-space-size=128'];

/** `execArgv` with the heap flags in front (a later flag of the same name wins in V8). */
export function withHeapFlags(execArgv: readonly string[]): string[] {
  return [...V8_HEAP_FLAGS, ...execArgv];
}
