/*
 * quota.ts: per-account UTC-hour and UTC-day counters on a real LevelDB, with
 * an injected clock so windows roll over at exact instants. listener.test.ts
 * covers the 452 on the wire and a restart end to end.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { PostinoError } from '../../common/errors.js';
import { Store } from '../../common/store.js';
import { Quotas, type QuotaLimits } from '../../listener/quota.js';
import { tempDir } from '../helpers/postino.js';

/** 2030-03-10T12:00:00Z */
const NOON = Date.UTC(2030, 2, 10, 12);
const HOUR = 3_600_000;

async function openStore(t: TestContext): Promise<Store> {
  const store = await Store.open(tempDir('quota'));
  t.after(() => store.close());
  return store;
}

async function setup(t: TestContext, limits: QuotaLimits[], start = NOON): Promise<{ store: Store; quotas: Quotas; clock: { t: number } }> {
  const store = await openStore(t);
  const clock = { t: start };
  const quotas = await Quotas.open(store, limits, () => clock.t);
  return { store, quotas, clock };
}

/** Reserves and commits one message, as the listener does with its intake batch. */
async function accept(store: Store, quotas: Quotas, account: string): Promise<void> {
  const r = quotas.reserve(account);
  await store.commit(r.ops, { sync: true });
  r.done(true);
}

function refused(code = 'QUOTA_EXCEEDED') {
  return (e: unknown) => e instanceof PostinoError && e.code === code && e.smtpCode === 452 && e.enhanced === '4.5.3';
}

async function keys(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const k of store.db.keys({ gte: 'lq!', lt: 'lq!~' })) out.push(k);
  return out;
}

test('an account without limits is never counted and never refused', async (t) => {
  const { quotas } = await setup(t, [{ id: 'free', perHour: 0, perDay: 0 }]);
  const r = quotas.reserve('free');
  assert.deepEqual(r.ops, []);
  assert.equal(quotas.usage('free'), undefined);
  assert.doesNotThrow(() => quotas.check('free'));
});

test('a reservation writes the new hour and day counts under lq!<account>!h!<YYYYMMDDHH> and !d!<YYYYMMDD>', async (t) => {
  const { quotas } = await setup(t, [{ id: 'shop', perHour: 10, perDay: 100 }]);
  assert.deepEqual(
    quotas.reserve('shop').ops.map((o) => [o.type, o.key, o.type === 'put' ? o.value.toString() : '']),
    [
      ['put', 'lq!shop!h!2030031012', '1'],
      ['put', 'lq!shop!d!20300310', '1'],
    ],
  );
});

test('the message past perHour is refused with QUOTA_EXCEEDED (452 4.5.3)', async (t) => {
  const { store, quotas } = await setup(t, [{ id: 'shop', perHour: 3, perDay: 0 }]);
  for (let i = 0; i < 3; i++) await accept(store, quotas, 'shop');
  assert.throws(() => quotas.reserve('shop'), refused());
});

test('the message past perDay is refused even when the hour has room', async (t) => {
  const { store, quotas, clock } = await setup(t, [{ id: 'shop', perHour: 2, perDay: 3 }]);
  await accept(store, quotas, 'shop');
  await accept(store, quotas, 'shop');
  clock.t += HOUR;
  await accept(store, quotas, 'shop');
  assert.throws(() => quotas.reserve('shop'), (e: unknown) => refused()(e) && /Daily quota of 3/.test((e as Error).message));
});

test('check() refuses at the limit without counting anything', async (t) => {
  const { store, quotas } = await setup(t, [{ id: 'shop', perHour: 1, perDay: 0 }]);
  quotas.check('shop');
  assert.deepEqual(quotas.usage('shop'), { hour: 0, day: 0 });
  await accept(store, quotas, 'shop');
  assert.throws(() => quotas.check('shop'), refused());
  assert.deepEqual(quotas.usage('shop'), { hour: 1, day: 1 });
});

test('the hourly window is still closed at HH:59:59.999 and opens at the next HH:00:00.000 UTC', async (t) => {
  const { store, quotas, clock } = await setup(t, [{ id: 'shop', perHour: 1, perDay: 0 }], NOON + 30 * 60_000);
  await accept(store, quotas, 'shop');
  clock.t = NOON + HOUR - 1;
  assert.throws(() => quotas.reserve('shop'), refused());
  clock.t = NOON + HOUR;
  assert.doesNotThrow(() => quotas.reserve('shop'));
});

test('the daily window opens at 00:00 UTC, and the day count restarts with it', async (t) => {
  const midnight = Date.UTC(2030, 2, 11);
  const { store, quotas, clock } = await setup(t, [{ id: 'shop', perHour: 0, perDay: 2 }], midnight - HOUR);
  await accept(store, quotas, 'shop');
  await accept(store, quotas, 'shop');
  clock.t = midnight - 1;
  assert.throws(() => quotas.reserve('shop'), refused());
  clock.t = midnight;
  assert.deepEqual(quotas.usage('shop'), { hour: 0, day: 0 });
});

test('the first write in a new window deletes the ended windows\' keys in the same batch', async (t) => {
  const { store, quotas, clock } = await setup(t, [{ id: 'shop', perHour: 5, perDay: 50 }]);
  await accept(store, quotas, 'shop');
  clock.t = Date.UTC(2030, 2, 11, 1);
  const { ops } = quotas.reserve('shop');
  assert.deepEqual(
    ops.map((o) => `${o.type} ${o.key}`),
    ['del lq!shop!h!2030031012', 'del lq!shop!d!20300310', 'put lq!shop!h!2030031101', 'put lq!shop!d!20300311'],
  );
});

test('done(false) gives the unit back: a reservation whose batch failed does not count', async (t) => {
  const { quotas } = await setup(t, [{ id: 'shop', perHour: 1, perDay: 0 }]);
  quotas.reserve('shop').done(false);
  assert.deepEqual(quotas.usage('shop'), { hour: 0, day: 0 });
  assert.doesNotThrow(() => quotas.reserve('shop'));
});

test('counts committed before a restart are read back at open and still limit', async (t) => {
  const { store, quotas } = await setup(t, [{ id: 'shop', perHour: 2, perDay: 0 }]);
  await accept(store, quotas, 'shop');
  await accept(store, quotas, 'shop');
  const reopened = await Quotas.open(store, [{ id: 'shop', perHour: 2, perDay: 0 }], () => NOON + 1);
  assert.deepEqual(reopened.usage('shop'), { hour: 2, day: 2 });
  assert.throws(() => reopened.reserve('shop'), refused());
});

test('a reservation never committed (the process died before the batch) is not counted after a restart', async (t) => {
  const { store, quotas } = await setup(t, [{ id: 'shop', perHour: 2, perDay: 0 }]);
  await accept(store, quotas, 'shop');
  quotas.reserve('shop'); // ops never committed
  const reopened = await Quotas.open(store, [{ id: 'shop', perHour: 2, perDay: 0 }], () => NOON + 1);
  assert.deepEqual(reopened.usage('shop'), { hour: 1, day: 1 });
});

test('open() deletes counters of windows that ended while the node was down, and keeps the current ones', async (t) => {
  const { store, quotas } = await setup(t, [{ id: 'shop', perHour: 5, perDay: 50 }]);
  await accept(store, quotas, 'shop');
  await Quotas.open(store, [{ id: 'shop', perHour: 5, perDay: 50 }], () => NOON + HOUR);
  assert.deepEqual(await keys(store), ['lq!shop!d!20300310']);
});

test('one account reaching its quota does not limit another', async (t) => {
  const { store, quotas } = await setup(t, [
    { id: 'a', perHour: 1, perDay: 0 },
    { id: 'b', perHour: 1, perDay: 0 },
  ]);
  await accept(store, quotas, 'a');
  assert.throws(() => quotas.reserve('a'), refused());
  assert.doesNotThrow(() => quotas.reserve('b'));
});

test('unit "recipients": a message counts its recipients, one that does not fit is refused whole, a failed commit gives them back', async (t) => {
  const { store, quotas } = await setup(t, [{ id: 'shop', perHour: 100, perDay: 0, unit: 'recipients' }]);
  const r = quotas.reserve('shop', 60);
  await store.commit(r.ops, { sync: true });
  r.done(true);
  assert.deepEqual(quotas.usage('shop'), { hour: 60, day: 60 });
  assert.throws(() => quotas.reserve('shop', 41), refused(), '60 + 41 > 100');
  assert.throws(() => quotas.reserve('shop', 41), (e: unknown) => e instanceof PostinoError && /quota of 100 recipients/.test(e.message));
  const lost = quotas.reserve('shop', 40);
  lost.done(false);
  assert.deepEqual(quotas.usage('shop'), { hour: 60, day: 60 }, 'units of a failed commit come back');
  quotas.check('shop');
  const last = quotas.reserve('shop', 40);
  last.done(true);
  assert.throws(() => quotas.check('shop'), refused(), 'full: not even one more at MAIL');
});
