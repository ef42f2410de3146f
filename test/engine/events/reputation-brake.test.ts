/*
 * The brake per stream, on real statistics and the real kill-switch: 1% of a
 * bulk campaign complained while plenty of clean transactional mail keeps the
 * account's overall rate under 0.3% — paused for the bulk stream, with the
 * figures; resumed, it does not pause again on the same complaints, but does
 * on new ones after the resume.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../common/config.js';
import type { EventInput } from '../../../common/events.js';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { DeliveryPause } from '../../../engine/delivery/delivery-pause.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { indexEvents } from '../../../engine/events/events-stage.js';
import { ReputationBrake } from '../../../engine/events/reputation-brake.js';
import { until } from '../../helpers/fake-clock.js';
import { tempDir } from '../../helpers/postino.js';

const many = (n: number, e: EventInput): EventInput[] => Array.from({ length: n }, (_, i) => ({ ...e, recipient: `r${i}@example.com` }));

test('a bulk stream drawing 1% complaints pauses the account although the overall rate is 0.17%; resume counts only what follows', async () => {
  const store = await Store.open(tempDir('brake'));
  const events = await EventLog.open(store);
  const { stats } = indexEvents(store, events);
  const killSwitch = await DeliveryPause.open(store);
  const config = parseConfig({ events: { brake: { minMessages: 100 } } });
  const brake = new ReputationBrake({ store, events, stats, killSwitch, config: config.events.brake, log: createLogger('test', 'silent') });
  await brake.start();
  const fold = async (): Promise<void> => {
    await stats.fold();
    await new Promise((r) => setTimeout(r, 50)); // the brake evaluates after the fold
  };
  try {
    await events.append(many(1_000, { type: 'delivered', account: 'shop', stream: 'transactional' }));
    await events.append(many(200, { type: 'delivered', account: 'shop', stream: 'bulk' }));
    await fold();
    assert.equal(killSwitch.isPaused('shop'), false);
    await events.append(many(2, { type: 'complained', account: 'shop', stream: 'bulk' }));
    await fold();
    await until(() => killSwitch.isPaused('shop'), 'paused', 5_000);
    const [paused] = await events.read(0, 10_000, (e) => e.type === 'paused');
    assert.deepEqual(paused!.figures, { stream: 'bulk', window: '24h', sent: 200, complaintRate: 0.01, hardBounceRate: 0, blockRate: 0 });
    assert.match(paused!.reason!, /^reputation brake \(bulk stream\): complaint rate 1\.00% ≥ 0\.30%/);
    assert.equal(brake.state()[0]!.account, 'shop');

    await killSwitch.resume('shop');
    await until(async () => (await events.read(0, 10_000, (e) => e.type === 'resumed')).length === 1, 'resumed', 5_000);
    await events.append(many(100, { type: 'delivered', account: 'shop', stream: 'bulk' }));
    await fold();
    assert.equal(killSwitch.isPaused('shop'), false, 'the complaints it acted on do not pause it again');
    assert.deepEqual(brake.state(), []);
    await events.append(many(1, { type: 'complained', account: 'shop', stream: 'bulk' }));
    await fold();
    await until(() => killSwitch.isPaused('shop'), 'paused again by a complaint after the resume (1 in 100)', 5_000);
    assert.equal((await events.read(0, 10_000, (e) => e.type === 'paused')).length, 2);
  } finally {
    await store.close();
  }
});

test('one fold, one evaluation: the brake reads the counters of the fold it follows and does not start another one while events keep coming', async () => {
  const store = await Store.open(tempDir('brake-fold'));
  const events = await EventLog.open(store);
  const { stats } = indexEvents(store, events);
  const killSwitch = await DeliveryPause.open(store);
  const config = parseConfig({ events: { brake: { minMessages: 1 } } });
  const brake = new ReputationBrake({ store, events, stats, killSwitch, config: config.events.brake, log: createLogger('test', 'silent') });
  await brake.start();
  // Mail keeps flowing: each fold is followed by a new event, as under load. A query that folded
  // first (the brake's, before issue #17) found that event and folded again, whose listener ran
  // the brake again: folds without end (bounded here at 30), one per message under load.
  let folds = 0;
  stats.onFold(() => {
    folds++;
    if (folds < 30) void events.append([{ type: 'delivered', account: 'shop', recipient: `r${folds}@example.com`, stream: 'transactional' }]);
  });
  try {
    await events.append([{ type: 'delivered', account: 'shop', recipient: 'r0@example.com', stream: 'transactional' }]);
    await stats.fold();
    await new Promise((r) => setTimeout(r, 300)); // the brake evaluates after the fold
    assert.equal(folds, 1);
    assert.equal(killSwitch.isPaused('shop'), false);
  } finally {
    await store.close();
  }
});
