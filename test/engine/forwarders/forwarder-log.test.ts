/*
 * The forwarder log over a real store: sightings per client address and account,
 * today's count reset on a new UTC day (injected clock), written by flush() and
 * read back after a reopen; an account's list holds only its own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { ForwarderLog } from '../../../engine/forwarders/forwarder-log.js';
import { tempDir } from '../../helpers/postino.js';

test('sightings per address and account, today reset at midnight UTC, kept across a reopen', async () => {
  const dir = tempDir('forwarder-log');
  let now = Date.UTC(2026, 10, 30, 23, 0, 0);
  const log = createLogger('test', 'silent');
  let store = await Store.open(dir);
  let f = await ForwarderLog.open(store, log, () => now);
  const seen = (address: string, account: string, queueId: string): void => f.note({ address, account, queueId, messageId: `<${queueId}@x>`, sender: 'app@example.org', forwarded: address === '10.0.0.1' });
  seen('10.0.0.1', 'shop', 'Q1');
  seen('10.0.0.1', 'shop', 'Q2');
  seen('10.0.0.2', 'crm', 'Q3');
  assert.deepEqual(f.list().map((e) => [e.address, e.account, e.today, e.total, e.lastQueueId]), [['10.0.0.2', 'crm', 1, 1, 'Q3'], ['10.0.0.1', 'shop', 2, 2, 'Q2']], 'most recently seen first');
  assert.deepEqual(f.list('shop').map((e) => e.address), ['10.0.0.1'], 'an account sees its own');
  assert.equal(f.list()[1]!.forwarded, true);
  await f.stop(); // flushes
  await store.close();

  now += 2 * 3600_000; // past midnight UTC
  store = await Store.open(dir);
  f = await ForwarderLog.open(store, log, () => now);
  assert.deepEqual(f.list().map((e) => [e.address, e.today, e.total]), [['10.0.0.2', 0, 1], ['10.0.0.1', 0, 2]], 'kept across the reopen; nothing yet today');
  seen('10.0.0.1', 'shop', 'Q4');
  const shop = f.list('shop')[0]!;
  assert.deepEqual([shop.today, shop.total, shop.lastQueueId, shop.lastSeenAt], [1, 3, 'Q4', new Date(now).toISOString()]);
  await f.stop();
  await store.close();
});
