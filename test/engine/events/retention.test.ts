/*
 * Retention: events past events.retentionDays go with their message-history
 * and recipient index entries, statistics past statsRetentionDays go, in batches, while
 * new events keep being written; what is younger stays, and the feed resumes
 * at the oldest kept event.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../../common/log.js';
import { Store } from '../../../common/store.js';
import { EventLog } from '../../../engine/events/event-log.js';
import { indexEvents } from '../../../engine/events/events-stage.js';
import { Retention } from '../../../engine/events/retention.js';
import { tempDir } from '../../helpers/postino.js';

const DAY = 86_400_000;

test('retention prunes old events, their index keys and old statistics in batches while writes go on', async () => {
  const store = await Store.open(tempDir('retention'));
  const events = await EventLog.open(store);
  const { stats, history } = indexEvents(store, events);
  const now = Date.now();
  const at = (days: number): string => new Date(now - days * DAY).toISOString();
  // 2,500 events 400 days old, 500 of 100 days, 500 of today: seqs in time order, as the writers make them.
  for (const [days, n] of [[400, 2_500], [100, 500], [0, 500]] as const) {
    for (let i = 0; i < n; i += 250) {
      await events.append(Array.from({ length: 250 }, (_, j) => ({ type: 'delivered' as const, at: at(days), account: 'a', queueId: `Q${days}-${i + j}`, messageId: `<m${days}-${i + j}@x>`, recipient: `r@d${days}.example`, tag: `t${days}` })));
    }
  }
  await stats.fold();
  const keys = async (prefix: string): Promise<number> => (await store.db.keys({ gte: prefix, lt: prefix + '~' }).all()).length;
  assert.equal(await keys('e!'), 3_500);
  const retention = new Retention({ store, events, stats, retentionDays: 30, statsRetentionDays: 396, log: createLogger('test', 'silent'), now: () => now });
  const pass = retention.prune();
  const during = await events.append([{ type: 'opened', account: 'a', queueId: 'Qnew', messageId: '<new@x>' }]); // a write while pruning
  const r = await pass;
  assert.equal(r.events, 3_000, 'everything older than 30 days');
  assert.equal(await keys('e!'), 501);
  assert.equal(await keys('mq!'), 501, 'queue-id index entries of pruned events are gone');
  assert.equal(await keys('mm!'), 501);
  assert.equal(await keys('mr!'), 500, 'recipient index entries of pruned events are gone (the new event has no recipient)');
  assert.deepEqual((await history.lookup('Q100-7', undefined)).length, 0);
  assert.equal((await history.lookup('Q0-7', undefined))[0]!.other.length + (await history.lookup('Q0-7', undefined))[0]!.copies.length, 1);
  assert.equal((await history.lookup('Qnew', undefined)).length, 1);
  const feed = await events.read(0, 10);
  assert.equal(feed[0]!.queueId, 'Q0-0', 'a reader from after=0 starts at the oldest kept event');
  assert.ok(during[0]!.seq > feed[0]!.seq);
  // Statistics: 400-day buckets gone, 100-day ones kept (13 months).
  const byTag = await stats.query({ groupBy: 'tag', account: 'a', from: now - 500 * DAY, to: now });
  assert.deepEqual(byTag.rows.map((row) => [row.key, row.delivered]), [['t0', 500], ['t100', 500]]);
  assert.ok(r.counters > 0);
  assert.deepEqual(await retention.prune(), { events: 0, counters: 0 }, 'a second pass has nothing to do');
  await store.close();
});
