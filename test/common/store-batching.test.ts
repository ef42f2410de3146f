/*
 * store.ts batching: unsynced commits made by the callbacks of one turn of the
 * event loop go to LevelDB as one batch, in call order, or ride in the synced
 * batch that goes out while they wait, never ahead of an earlier unsynced one
 * (issue #17).
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

test('unsynced commits waiting for their turn ride in the synced batch that goes out', async () => {
  const store = await Store.open(tempDir('store-riders'));
  const before = { ...store.stats };
  const seen: string[] = [];
  store.observe('r!', { op: (op) => seen.push(op.key), reopened: () => undefined });
  const lease = store.commit([put('r!lease', 'l')], { sync: false });
  const ack = store.commit([{ type: 'del', key: 'r!gone' }], { sync: false });
  const intake = store.commit([put('r!intake', 'i')], { sync: true });
  await Promise.all([lease, ack, intake]);
  assert.equal(store.stats.syncedBatches - before.syncedBatches, 1);
  assert.equal(store.stats.unsyncedBatches - before.unsyncedBatches, 0, 'no batch of their own');
  assert.equal(store.stats.riders - before.riders, 2);
  assert.deepEqual(seen, ['r!lease', 'r!gone', 'r!intake'], 'riders first, in call order');
  assert.equal(store.getNow('r!lease')?.toString(), 'l');
  await store.close();
});

test('no unsynced commit rides past an unsynced batch in flight, and none overtakes a batch carrying riders', async () => {
  // Each write's start is recorded through the fault seam (it never fails here), with whether the carrier had landed.
  const starts: Array<{ label: string; carrierLanded: boolean }> = [];
  let label = '';
  let landed = false;
  const store = await Store.open(tempDir('store-rider-order'), { writeFault: () => void starts.push({ label, carrierLanded: landed }) });
  // An unsynced batch in flight: the next unsynced commit may not ride in a synced batch (it would land first).
  label = 'first unsynced';
  const inFlight = store.commit([put('k', '1')], { sync: false });
  await new Promise((r) => setImmediate(r)); // its turn ended: the batch is in LevelDB's hands
  label = 'synced, no riders';
  const second = store.commit([put('k', '2')], { sync: false });
  const synced = store.commit([put('s', 'x')], { sync: true });
  await Promise.all([inFlight, second, synced]);
  assert.equal(store.stats.riders, 0);
  assert.equal(store.getNow('k')?.toString(), '2');
  // A synced batch carrying a rider in flight: an unsynced commit made meanwhile is written only after it landed.
  label = 'synced with a rider';
  const rider = store.commit([put('k', '3')], { sync: false });
  const carrier = store.commit([put('s', 'y')], { sync: true }).then(() => void (landed = true));
  label = 'after the carrier';
  const later = store.commit([put('k', '4')], { sync: false });
  await Promise.all([rider, carrier, later]);
  assert.equal(store.stats.riders, 1);
  assert.deepEqual(
    starts.filter((s) => s.label === 'after the carrier'),
    [{ label: 'after the carrier', carrierLanded: true }],
    'the later unsynced batch started once, after the carrier landed',
  );
  assert.equal(store.getNow('k')?.toString(), '4');
  await store.close();
});

test('a large unsynced commit does not ride, nor does any queued after it', async () => {
  const store = await Store.open(tempDir('store-rider-cap'));
  const before = { ...store.stats };
  const small = store.commit([put('c!small', 's')], { sync: false });
  // 2 MiB of values: more than a synced batch takes along (RIDERS_MAX_BYTES, 1 MiB).
  const large = store.commit([{ type: 'put', key: 'c!large', value: Buffer.alloc(2 * 1024 * 1024, 1) }], { sync: false });
  const after = store.commit([put('c!after', 'a')], { sync: false });
  const synced = store.commit([put('c!synced', 'y')], { sync: true });
  await Promise.all([small, large, after, synced]);
  assert.equal(store.stats.riders - before.riders, 1, 'only the small one, queued first, rode');
  assert.equal(store.stats.unsyncedBatches - before.unsyncedBatches, 1, 'the large one and the one after it in one batch of their own');
  assert.equal(store.getNow('c!large')?.length, 2 * 1024 * 1024);
  assert.equal(store.getNow('c!after')?.toString(), 'a');
  await store.close();
});
