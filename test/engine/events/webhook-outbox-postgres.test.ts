/*
 * The shared webhook outbox's rows (engine/events/webhook-outbox-postgres.ts)
 * on this file's own PostgreSQL, three nodes' views of one table: a row is
 * its origin's while its lease runs; once it ran out, exactly one of two nodes
 * asking at the same moment takes it, with the pending batch; the node that
 * lost it can no longer write it (fencing); the origin back asks for it, the
 * holder hands it over, and the origin gets it with the batch.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migrate } from '../../../common/storage/postgres/migrations.js';
import { openPool } from '../../../common/storage/postgres/pool.js';
import { PgFeed } from '../../../engine/events/pg-feed.js';
import { PgWebhookOutbox } from '../../../engine/events/webhook-outbox-postgres.js';
import type { OutboxState } from '../../../engine/events/webhooks.js';
import { sleep } from '../../helpers/forwarder.js';
import { clusterForFile } from '../../helpers/postgres.js';

const pgFile = clusterForFile();
const LEASE_MS = 1_500;

test('a silent node\'s outbox row: one taker, the pending batch kept, the old holder fenced out, handed back to its origin', { skip: pgFile.skip, timeout: 60_000 }, async () => {
  const url = await pgFile.cluster().newDatabase();
  const pool = openPool({ url, poolSize: 4, connectTimeoutSeconds: 5, queryTimeoutSeconds: 30 });
  try {
    await migrate(pool);
    const feed = new PgFeed(pool);
    const [a, b, c] = ['node-a', 'node-b', 'node-c'].map((n) => new PgWebhookOutbox(pool, n, feed, LEASE_MS)) as [PgWebhookOutbox, PgWebhookOutbox, PgWebhookOutbox];
    const known = ['shop!crm'];

    const first = await a.claim('shop', 'crm', { cursor: 7, failures: 0, delivered: 0 });
    assert.equal(first?.cursor, 7, 'the origin creates and holds its row');
    const pending: OutboxState = { cursor: 7, failures: 1, delivered: 0, batch: { id: 'msg_pending', lastSeq: 12, body: '{"x":1}', events: 3, attempts: 1 } };
    assert.equal(await a.save('shop', 'crm', 'node-a', pending), true);
    assert.deepEqual(await b.take(known), [], 'not taken while its lease runs');
    assert.deepEqual(await b.take(['shop!other']), [], 'an endpoint the node does not know is never taken');

    await sleep(LEASE_MS + 300); // node A silent: no renewal
    const [tb, tc] = await Promise.all([b.take(known), c.take(known)]);
    assert.equal(tb.length + tc.length, 1, 'exactly one taker');
    const [taker, other] = tb.length ? [b, c] : [c, b];
    const row = (tb.length ? tb : tc)[0]!;
    assert.deepEqual([row.origin, row.state], ['node-a', pending], 'taken with the cursor and the pending batch (same webhook-id and body)');
    assert.deepEqual(await other.take(known), [], 'held again: no second taker');

    assert.equal(await a.save('shop', 'crm', 'node-a', { ...pending, cursor: 12, batch: undefined }), false, 'the old holder is fenced out');
    assert.equal(await a.claim('shop', 'crm', pending), undefined, 'the origin back: the row is the taker\'s while its lease runs');
    const renewed = await taker.renew();
    assert.deepEqual(renewed.map((r) => [r.origin, r.reclaim]), [['node-a', true]], 'the taker sees the origin asking');
    assert.equal(await taker.save('shop', 'crm', 'node-a', { ...pending, cursor: 12, batch: undefined }), true, 'the holder writes');
    await taker.handBack('shop', 'crm', 'node-a');
    assert.equal(await taker.save('shop', 'crm', 'node-a', pending), false, 'handed back: the taker is fenced out');
    assert.deepEqual(await taker.renew(), []);
    const back = await a.claim('shop', 'crm', { cursor: 0, failures: 0, delivered: 0 });
    assert.deepEqual([back?.cursor, back?.batch], [12, undefined], 'the origin gets its row with what the taker posted');
    assert.deepEqual((await a.renew()).map((r) => [r.origin, r.reclaim, r.state]), [['node-a', false, undefined]]);
  } finally {
    await pool.end();
  }
});
