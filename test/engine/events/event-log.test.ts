import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { tempDir } from '../../helpers/postino.js';

test('seq strictly increases, survives reopen, and readers never pass an unsettled event', async () => {
  const dir = tempDir('ev');
  let store = await Store.open(dir);
  let log = await EventLog.open(store);
  await log.append([{ type: 'accepted', account: 'a', queueId: 'q1' }]);
  const slow = log.prepare([{ type: 'delivered', account: 'a', queueId: 'q2' }]); // not committed yet
  await log.append([{ type: 'delivered', account: 'a', queueId: 'q3' }]);
  assert.deepEqual((await log.read(0, 10)).map((e) => e.queueId), ['q1'], 'q3 waits behind the unsettled q2');
  await store.commit(slow.ops, { sync: false });
  log.settle(slow);
  const all = await log.read(0, 10);
  assert.deepEqual(all.map((e) => [e.seq, e.queueId]), [[1, 'q1'], [2, 'q2'], [3, 'q3']]);
  assert.deepEqual((await log.read(2, 10)).map((e) => e.seq), [3], 'resumable by seq');
  await store.close();
  store = await Store.open(dir);
  log = await EventLog.open(store);
  const [next] = await log.append([{ type: 'opened', account: 'a' }]);
  assert.equal(next!.seq, 4, 'continues after reopen');
  await store.close();
});
