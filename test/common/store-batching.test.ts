/*
 * store.ts batching: unsynced commits made by the callbacks of one turn of the
 * event loop go to LevelDB as one batch, in call order (issue #17).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

/** Runs `n` callbacks in one check phase of the event loop, as a poll phase runs the data events of n sockets; answers what they returned. */
function inOneTurn<T>(n: number, f: (i: number) => T): Promise<T[]> {
  return new Promise((resolve) => {
    const out: T[] = [];
    for (let i = 0; i < n; i++) {
      setImmediate(() => {
        out.push(f(i));
        if (out.length === n) resolve(out);
      });
    }
  });
}

const put = (key: string, value: string) => ({ type: 'put' as const, key, value: Buffer.from(value) });

test('unsynced commits from the callbacks of one turn share one batch', async () => {
  const store = await Store.open(tempDir('store-turn'));
  const before = store.stats.unsyncedBatches;
  await Promise.all(await inOneTurn(10, (i) => store.commit([put(`t!${i}`, String(i))], { sync: false })));
  // Taken at once, the first commit would have gone alone and the other nine in a second batch.
  assert.equal(store.stats.unsyncedBatches - before, 1);
  assert.deepEqual(store.getManyNow(Array.from({ length: 10 }, (_, i) => `t!${i}`)).map((v) => v?.toString()), Array.from({ length: 10 }, (_, i) => String(i)));
  await store.close();
});

test('unsynced commits land in call order, within a turn and across turns', async () => {
  const store = await Store.open(tempDir('store-order'));
  // One key written by every callback of a turn: the last call wins.
  await Promise.all(await inOneTurn(20, (i) => store.commit([put('k', String(i))], { sync: false })));
  assert.equal(store.getNow('k')?.toString(), '19');
  // A put and its delete in consecutive commits, the second made while the first waits for its turn to end.
  const first = store.commit([put('gone', 'x')], { sync: false });
  const second = store.commit([{ type: 'del', key: 'gone' }], { sync: false });
  await Promise.all([first, second]);
  assert.equal(store.getNow('gone'), undefined);
  // A commit made once a batch is in flight waits for it and lands after it.
  const a = store.commit([put('late', 'a')], { sync: false });
  await new Promise((r) => setImmediate(r));
  const b = store.commit([put('late', 'b')], { sync: false });
  await Promise.all([a, b]);
  assert.equal(store.getNow('late')?.toString(), 'b');
  await store.close();
});
