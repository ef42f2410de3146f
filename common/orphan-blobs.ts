/*
 * orphan-blobs.ts — removes blob files no queue record references, at start.
 *
 * A large body is written to <store>/blobs/<queue>-<id> and fsynced before the
 * batch that references it (durable-queue.ts). A crash between the two (or
 * between a removal's batch and its file delete) leaves a file nobody will
 * read or delete: harmless, but it holds disk for good and counts in the
 * spool's disk usage. Run once a stage has opened its queues and before it
 * takes or relays mail (no transaction is writing a blob then), it lists each
 * queue's records and deletes the `<queue>-` files that none of them names.
 * Files of queues not passed in are left alone.
 *
 * Side effects: reads every record of the given queues; deletes files.
 */
import fsp from 'node:fs/promises';
import type { BodyRef } from './durable-queue.js';
import type { Store } from './store.js';

/** What the sweep reads of a DurableQueue (whatever its meta type): live and failed records both keep their body. */
export interface BlobOwner {
  readonly name: string;
  records(): AsyncIterable<{ body: BodyRef }>;
  failedRecords?(): AsyncIterable<{ body: BodyRef }>;
}

/** Deletes unreferenced blob files of `queues` (all in `store`); returns the names removed. */
export async function sweepOrphanBlobs(store: Store, queues: readonly BlobOwner[]): Promise<string[]> {
  const referenced = new Set<string>();
  for (const q of queues) {
    for (const list of [q.records(), q.failedRecords?.()]) {
      if (!list) continue;
      for await (const rec of list) if (rec.body.kind === 'file') referenced.add(rec.body.name);
    }
  }
  const prefixes = queues.map((q) => `${q.name}-`);
  const removed: string[] = [];
  for (const name of await fsp.readdir(store.blobDir)) {
    if (referenced.has(name) || !prefixes.some((p) => name.startsWith(p))) continue;
    await store.removeBlob(name);
    removed.push(name);
  }
  return removed;
}
