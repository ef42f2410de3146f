/*
 * pool.ts against a real PostgreSQL that stops in the middle of a transaction:
 * the server ends the connection while the transaction's code is between two
 * statements. The transaction fails as SHARED_STATE_UNAVAILABLE and the
 * process goes on: pg-pool does not listen for a checked-out client's errors,
 * so without sharedTransaction's own listener that 'error' event had none and
 * ended the node (a hosted node crashed this way when PostgreSQL stopped).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PostinoError } from '../../../../common/errors.js';
import { sharedQuery, sharedTransaction } from '../../../../common/storage/postgres/pool.js';
import { clusterForFile, shortPool } from '../../../helpers/postgres.js';

const pgFile = clusterForFile();

test('PostgreSQL stopped between two statements of a transaction: SHARED_STATE_UNAVAILABLE, and the process lives on', { skip: pgFile.skip, timeout: 120_000 }, async () => {
  const cluster = pgFile.cluster();
  const pool = shortPool(await cluster.newDatabase());
  const uncaught: Error[] = [];
  const onUncaught = (err: Error): void => void uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  try {
    await sharedQuery(pool, 'setup', 'CREATE TABLE t (n int)');
    let stopped!: () => void;
    const between = new Promise<void>((r) => (stopped = r));
    const tx = sharedTransaction(pool, 'a test transaction', async (c) => {
      await c.query('INSERT INTO t VALUES (1)');
      await between; // the server goes away here, while this client is checked out and idle
      await c.query('INSERT INTO t VALUES (2)');
    });
    const outcome = tx.then(() => undefined, (err: unknown) => err); // it may fail before the code reaches `between`
    await cluster.stop();
    await new Promise((r) => setTimeout(r, 500)); // the connection's end reaches the client
    stopped();
    const err = await outcome;
    assert.ok(err instanceof PostinoError && err.code === 'SHARED_STATE_UNAVAILABLE', String(err));
    assert.deepEqual(uncaught, [], 'no uncaught error event');
    await cluster.start();
    // The broken connection was not given back: the next statement gets a fresh one.
    const r = await sharedQuery<{ n: number }>(pool, 'after', 'SELECT count(*)::int AS n FROM t');
    assert.equal(r.rows[0]!.n, 0, 'the transaction was not committed');
  } finally {
    process.off('uncaughtException', onUncaught);
    await pool.end();
  }
});
