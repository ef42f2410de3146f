/*
 * Store.diskUsage: walked asynchronously and cached, so /status and /metrics
 * scrapes do not walk the spool folder each time; maxAgeMs 0 measures now.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

test('diskUsage counts blobs, answers from its cache within the max age, and measures afresh with 0', async () => {
  const store = await Store.open(tempDir('disk-usage'));
  try {
    const base = await store.diskUsage(0);
    fs.writeFileSync(store.blobPath('spool-a'), Buffer.alloc(10_000));
    const first = await store.diskUsage(0);
    assert.ok(first >= base + 10_000);
    fs.writeFileSync(store.blobPath('spool-b'), Buffer.alloc(10_000));
    assert.equal(await store.diskUsage(), first, 'cached: the second file is not seen yet');
    const [x, y] = await Promise.all([store.diskUsage(0), store.diskUsage(0)]);
    assert.equal(x, y);
    assert.ok(x >= first + 10_000, 'a fresh walk sees it');
  } finally {
    await store.close();
  }
});
