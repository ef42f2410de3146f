/*
 * group-statement.ts: the first request goes out alone and at once; those that
 * arrive while statements are in flight go out together as the next one, each
 * caller getting its own answer; a failed statement fails every request of its
 * batch and no other; a statement that answers the wrong number fails its batch.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GroupStatement } from '../../../../common/storage/postgres/group-statement.js';

/** An exec whose statements the test ends one at a time. */
function manual(): { g: GroupStatement<number, number>; batches: number[][]; finish(fail?: Error): void } {
  const batches: number[][] = [];
  const pending: Array<{ resolve(v: number[]): void; reject(e: Error): void; qs: number[] }> = [];
  const g = new GroupStatement<number, number>(
    (qs) =>
      new Promise((resolve, reject) => {
        batches.push(qs);
        pending.push({ resolve, reject, qs });
      }),
    { maxInFlight: 1, maxBatch: 3 },
  );
  return {
    g,
    batches,
    finish(fail) {
      const p = pending.shift()!;
      if (fail) p.reject(fail);
      else p.resolve(p.qs.map((q) => q * 10));
    },
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('the first request goes alone; those arriving meanwhile go together, at most maxBatch, each with its own answer', async () => {
  const m = manual();
  const answers = [1, 2, 3, 4, 5].map((q) => m.g.run(q));
  await tick();
  assert.deepEqual(m.batches, [[1]], 'the first at once, the others wait for it');
  m.finish();
  await tick();
  assert.deepEqual(m.batches, [[1], [2, 3, 4]]);
  m.finish();
  await tick();
  m.finish();
  assert.deepEqual(await Promise.all(answers), [10, 20, 30, 40, 50]);
  assert.deepEqual(m.batches, [[1], [2, 3, 4], [5]]);
});

test('a failed statement fails its own batch only; the next batch goes out', async () => {
  const m = manual();
  const first = m.g.run(1);
  const second = [m.g.run(2), m.g.run(3)];
  await tick();
  m.finish(new Error('connection lost'));
  await assert.rejects(first, /connection lost/);
  await tick();
  m.finish();
  assert.deepEqual(await Promise.all(second), [20, 30]);
});

test('a statement that answers the wrong number of requests fails its batch', async () => {
  // Right for one request, wrong for two: the first (alone) is answered, the two queued behind it are not.
  const g = new GroupStatement<number, number>(async (qs) => (qs.length > 1 ? [1] : [qs[0]!]), { maxInFlight: 1 });
  assert.equal(await g.run(0), 0);
  const first = g.run(0);
  const batch = [g.run(1), g.run(2)];
  assert.equal(await first, 0);
  const settled = await Promise.allSettled(batch);
  assert.ok(settled.every((s) => s.status === 'rejected' && /answered 1 of 2/.test(String(s.reason))), JSON.stringify(settled));
});
