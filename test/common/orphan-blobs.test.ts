/*
 * orphan-blobs.ts: blob files no record references (a crash between the fsync
 * of the file and the batch naming it) are deleted at start; referenced ones,
 * and files of other queues, are not.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DurableQueue } from '../../common/durable-queue.js';
import { sweepOrphanBlobs } from '../../common/orphan-blobs.js';
import { Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

test('an unreferenced blob of the queue goes; a referenced one and another queue\'s stay', async () => {
  const store = await Store.open(tempDir('orphans'));
  try {
    const q = await DurableQueue.open<{ n: number }>(store, 'spool', { inlineMaxBytes: 16 });
    const kept = await q.enqueue({ meta: { n: 1 }, body: Buffer.alloc(1000, 'a') });
    assert.equal(kept.body.kind, 'file');
    fs.writeFileSync(path.join(store.blobDir, 'spool-0MX00000000000000000'), 'left by a crash');
    fs.writeFileSync(path.join(store.blobDir, 'intake-0MX00000000000000000'), 'another queue');
    assert.deepEqual(await sweepOrphanBlobs(store, [q]), ['spool-0MX00000000000000000']);
    assert.deepEqual(fs.readdirSync(store.blobDir).sort(), ['intake-0MX00000000000000000', `spool-${kept.id}`]);
    assert.equal((await q.readBody(kept)).length, 1000);
  } finally {
    await store.close();
  }
});

test('the body of a failed record (dead letter) is referenced too and stays', async () => {
  const store = await Store.open(tempDir('orphans-failed'));
  try {
    const q = await DurableQueue.open<{ n: number }>(store, 'intake', { inlineMaxBytes: 16 });
    await q.enqueue({ meta: { n: 1 }, body: Buffer.alloc(1000, 'b') });
    const [rec] = await q.lease(1, 60_000);
    await store.commit(q.failOps(rec!, 'poison', Date.now()), { sync: true });
    q.failedMoved(rec!);
    assert.deepEqual(await sweepOrphanBlobs(store, [q]), [], 'nothing removed');
    let seen = 0;
    for await (const f of q.failedRecords()) {
      assert.equal((await q.readBody(f)).length, 1000, 'the failed body is still readable');
      seen++;
    }
    assert.equal(seen, 1);
  } finally {
    await store.close();
  }
});
