/*
 * allocator-env.ts — glibc malloc settings for the processes `postino up` starts.
 *
 * Why: a first touch of a fresh page costs 15–40 µs on this project's CI-size
 * machine (a 2-core VM; measured by touching 64 MiB), where bare metal takes
 * well under 1 µs. glibc serves allocations of 128 KiB and more with a fresh
 * mmap and returns them with munmap on free, and gives heap memory back to the
 * kernel as soon as 128 KiB are free at its top; LevelDB builds each write
 * batch in one growing buffer (a 100 KB message is a 100 KB+ batch), V8's
 * compiler and the thread pool allocate and free in the same way. So the same
 * pages were faulted in again for every message: 58 faults per 100 KB message
 * in the forwarder, and a 4-op batch of 100 KB values took 2.5–3.7 ms in
 * classic-level's batch call instead of 0.15–0.25 ms (issue #17).
 * With these two settings freed memory stays in the process for the next
 * allocation. The cost is memory kept after a peak: at most the trim threshold
 * (64 MiB) per malloc arena is held instead of returned.
 *
 * Only defaults: a value already in the environment wins (an operator can set
 * other values or "" for glibc's own). The systemd units and the Containerfile
 * set the same values for processes they start (deploy/).
 */

/** Allocations below this come from the heap, not a fresh mmap (glibc's own maximum for its dynamic threshold). */
export const MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024;
/** Free memory kept at the top of a heap before it is given back to the kernel. */
export const TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024;

export const ALLOCATOR_ENV: Readonly<Record<string, string>> = {
  MALLOC_MMAP_THRESHOLD_: String(MMAP_THRESHOLD_BYTES),
  MALLOC_TRIM_THRESHOLD_: String(TRIM_THRESHOLD_BYTES),
};

/** The allocator defaults under `env`'s own values. */
export function withAllocatorEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...ALLOCATOR_ENV, ...env };
}
