/*
 * Guarantee 1 by killing: SIGKILL the whole `postino up` process group at a random
 * moment after at least 100 messages were acknowledged, restart on the same data,
 * and every message that got 250 must reach the sink.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { startUp, tempDir, upConfig } from '../helpers/postino.js';
import { runPythonSender, type SendResult } from '../helpers/python-sender.js';
import { countDelivered } from '../helpers/sink-reader.js';

test('SIGKILL mid-load loses no acknowledged message', { timeout: 240_000 }, async () => {
  const dataDir = tempDir('kill');
  const { config, ports } = await upConfig();
  const up = await startUp(dataDir, config);
  const killAfter = 100 + Math.floor(Math.random() * 250);
  const sender = runPythonSender(['--port', String(ports.forwarder), '--count', '500', '--prefix', 'k', '--stop-on-error']);
  let killed = false;
  sender.onResult((_r, all) => {
    if (!killed && all.filter((x) => x.ok).length >= killAfter) {
      killed = true;
      up.kill9();
    }
  });
  const results: SendResult[] = await sender.done;
  if (!killed) up.kill9();
  await up.exited;
  const acked = results.filter((r) => r.ok).map((r) => r.testId);
  assert.ok(acked.length >= 100, `at least 100 acknowledged before the kill (got ${acked.length})`);

  const again = await startUp(dataDir, config);
  try {
    const { lost, duplicates, unacked } = await countDelivered(path.join(dataDir, 'sink'), acked, 120_000);
    console.log(`# durability: killed after ${killAfter} (target), ${acked.length} acknowledged, ${lost.length} lost, ${duplicates} duplicates, ${unacked} delivered without an ack`);
    assert.deepEqual(lost, [], 'no acknowledged message lost');
  } finally {
    await again.stop();
  }
});
