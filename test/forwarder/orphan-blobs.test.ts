/*
 * At start the forwarder deletes spool blob files no record references (left by
 * a crash between a blob's fsync and the batch naming it), and says so once.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { forwarderConfig, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/postino.js';

test('an orphaned spool blob is removed at start', { timeout: 30_000 }, async () => {
  const dataDir = tempDir('fwd-orphans');
  const { config } = await forwarderConfig(['smtp://127.0.0.1:9']);
  const blobs = path.join(dataDir, 'forwarder', 'blobs');
  fs.mkdirSync(blobs, { recursive: true });
  fs.writeFileSync(path.join(blobs, 'spool-0MX00000000000000000'), 'left by a crash');
  const fwd = await startForwarderProcess(dataDir, config);
  try {
    assert.deepEqual(fs.readdirSync(blobs), []);
    assert.ok(fwd.lines.some((l) => l.includes('"event":"orphan-blobs-removed"') && l.includes('"count":1')));
  } finally {
    await fwd.stop();
  }
});
