/*
 * native-batch.ts: a reused native batch writes exactly the ops of each call, atomically and
 * in order, whatever the batch held before; a write made while another is in flight gets a
 * batch of its own; and the store uses it with the classic-level this project pins (issue #17).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ClassicLevel } from 'classic-level';
import { nativeBatchWriter, RETAIN_MAX_BYTES } from '../../common/native-batch.js';
import { Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

const put = (key: string, value: string | Buffer) => ({ type: 'put' as const, key, value: Buffer.isBuffer(value) ? value : Buffer.from(value) });
const del = (key: string) => ({ type: 'del' as const, key });

async function openDb(name: string): Promise<ClassicLevel<string, Buffer>> {
  const db = new ClassicLevel<string, Buffer>(path.join(tempDir(name), 'db'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  return db;
}

async function keys(db: ClassicLevel<string, Buffer>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const [k, v] of db.iterator()) out[k] = v.toString();
  return out;
}

test('the pinned classic-level is what native-batch.ts expects, and the store writes through it', async () => {
  const db = await openDb('native-batch-found');
  assert.ok(nativeBatchWriter(db), 'classic-level changed: native-batch.ts falls back to _batch (see its header)');
  await db.close();
  const store = await Store.open(tempDir('native-batch-store'));
  assert.equal(store.nativeBatches, true);
  await store.commit([put('a', '1'), put('b', '2')], { sync: true });
  await store.commit([del('a'), put('c', '3')], { sync: false });
  await store.commit([put('d', '4')], { sync: true });
  assert.deepEqual(store.getManyNow(['a', 'b', 'c', 'd']).map((v) => v?.toString()), [undefined, '2', '3', '4']);
  await store.close();
});

test('a reused batch writes only the ops of its own call, in call order', async () => {
  const db = await openDb('native-batch-reuse');
  const w = nativeBatchWriter(db)!;
  await w.write([put('x', 'first'), put('y', 'kept'), put('z', 'z1')], true);
  // Deleted behind the writer's back: a batch that still held the first call's ops would bring it back.
  await db.del('x');
  await w.write([put('z', 'z2'), del('y'), put('y', 'again'), put('w', 'new')], false);
  assert.deepEqual(await keys(db), { w: 'new', y: 'again', z: 'z2' });
  // An empty call writes nothing (and does not replay the last one).
  await db.del('w');
  await w.write([], true);
  assert.deepEqual(await keys(db), { y: 'again', z: 'z2' });
  await db.close();
});

test('writes made while one is in flight each land whole, none mixed into another', async () => {
  const db = await openDb('native-batch-overlap');
  const w = nativeBatchWriter(db)!;
  const body = Buffer.alloc(64 * 1024, 'b');
  // Started in one turn: all but the first find the kept batch in LevelDB's hands.
  await Promise.all(Array.from({ length: 8 }, (_, i) => w.write([put(`m!${i}`, body), put(`n!${i}`, String(i)), del(`gone!${i}`)], i % 2 === 0)));
  const got = await keys(db);
  assert.equal(Object.keys(got).length, 16);
  for (let i = 0; i < 8; i++) {
    assert.equal(got[`m!${i}`]!.length, body.length);
    assert.equal(got[`n!${i}`], String(i));
  }
  await db.close();
});

test('a batch larger than RETAIN_MAX_BYTES is written, and the next small one does not repeat it', async () => {
  const db = await openDb('native-batch-large');
  const w = nativeBatchWriter(db)!;
  const big = Buffer.alloc(256 * 1024, 'L');
  const n = Math.ceil(RETAIN_MAX_BYTES / big.length) + 1;
  await w.write(Array.from({ length: n }, (_, i) => put(`big!${i}`, big)), true);
  await db.clear();
  await w.write([put('small', 's')], true);
  assert.deepEqual(await keys(db), { small: 's' });
  await db.close();
});

test('a batch call with ops LevelDB cannot take fails that call only; the next call writes', async () => {
  const db = await openDb('native-batch-bad');
  const w = nativeBatchWriter(db)!;
  // A value that is neither a Buffer nor a string: the binding throws on it (N-API type error) or
  // writes it as empty; either way the ops before it in the same call must not reach the next call.
  const bad = { type: 'put' as const, key: 'bad', value: 42 as unknown as Buffer };
  await w.write([put('before', 'b'), bad], true).catch(() => undefined);
  await db.clear();
  await w.write([put('after', 'a')], true);
  assert.deepEqual(await keys(db), { after: 'a' });
  await db.close();
});
