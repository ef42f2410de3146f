import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { newQueueId } from '../../common/durable-queue.js';
import { isSpoolId, SeenSpoolIds, SpoolIdFilter, stampSpoolId } from '../../common/spool-id.js';
import { Store } from '../../common/store.js';
import { throughStages } from '../../common/stream-batches.js';
import { TokenBucket } from '../../common/token-bucket.js';
import { tempDir } from '../helpers/postino.js';

function filter(chunks: string[]): { out: string; id: string | undefined } {
  const f = new SpoolIdFilter();
  const parts = throughStages([f], chunks.map((c) => Buffer.from(c)), true);
  return { out: Buffer.concat(parts).toString(), id: f.spoolId };
}

test('the filter removes the spool id header (folded lines too) at any chunk boundary and leaves the body alone', () => {
  const msg = 'X-Postino-Spool-Id: ABC123\r\nFrom: a@b\r\nx-postino-spool-id: forged\r\n\tcontinued\r\nSubject: hi\r\n\r\nX-Postino-Spool-Id: in the body stays\r\n';
  const want = 'From: a@b\r\nSubject: hi\r\n\r\nX-Postino-Spool-Id: in the body stays\r\n';
  for (let cut = 1; cut < msg.length; cut += 3) {
    const r = filter([msg.slice(0, cut), msg.slice(cut)]);
    assert.equal(r.out, want, `cut at ${cut}`);
    assert.equal(r.id, 'ABC123', 'the first one (the forwarder prepends its own) wins');
  }
  const bytes: string[] = [...msg];
  assert.equal(filter(bytes).out, want, 'byte by byte');
});

test('a chunk whose only dropped line is the forwarder\'s first one passes as a view of the chunk, not a copy', () => {
  const chunk = Buffer.from(`X-Postino-Spool-Id: ABC123\r\nFrom: a@b\r\nSubject: hi\r\n\r\n${'body line\r\n'.repeat(5000)}`);
  const out = throughStages([new SpoolIdFilter()], [chunk], true);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.toString(), chunk.toString().slice('X-Postino-Spool-Id: ABC123\r\n'.length));
  assert.ok(out[0]!.buffer === chunk.buffer && out[0]!.byteOffset === chunk.byteOffset + 28, 'the same memory');
});

test('stamp then filter round-trips the message byte for byte', async () => {
  const body = 'From: a@b\r\n\r\nhello\r\n';
  const stamped: Buffer[] = [];
  for await (const c of stampSpoolId('Q1', Readable.from([Buffer.from(body)]))) stamped.push(c as Buffer);
  const r = filter([Buffer.concat(stamped).toString()]);
  assert.equal(r.out, body);
  assert.equal(r.id, 'Q1');
  const body1 = Buffer.from(body);
  const fromBuffer = stampSpoolId('Q1', body1);
  assert.ok(Buffer.concat(fromBuffer).equals(Buffer.concat(stamped)), 'an inline body is stamped byte for byte the same');
  assert.equal(fromBuffer.at(-1), body1, 'the spooled bytes themselves, not a copy');
  const fromPieces = stampSpoolId('Q1', [body1.subarray(0, 5), body1.subarray(5)]);
  assert.ok(Buffer.concat(fromPieces).equals(Buffer.concat(stamped)), 'a body in pieces too');
});

test('seen ids: remembered with the enqueue batch, forgotten after the TTL by the sweep', async () => {
  let now = 1_000_000;
  const store = await Store.open(tempDir('sid'));
  const seen = new SeenSpoolIds(store, 7 * 86_400_000, () => now);
  assert.equal(await seen.lookup('acme', 'S1'), undefined);
  assert.equal(seen.begin('acme', 'S1'), true);
  assert.equal(seen.begin('acme', 'S1'), false, 'a second writer of the same id is told to wait');
  assert.equal(seen.begin('other', 'S1'), true, 'another account writing the same id is not');
  seen.end('other', 'S1');
  await store.commit(seen.rememberOps('acme', 'S1', 'Q1'), { sync: true });
  seen.end('acme', 'S1');
  assert.equal(await seen.lookup('acme', 'S1'), 'Q1');
  assert.equal(await seen.lookup('other', 'S1'), undefined, 'ids are remembered per scope (account)');
  now += 7 * 86_400_000 - 1;
  assert.equal(await seen.sweep(), 0);
  assert.equal(await seen.lookup('acme', 'S1'), 'Q1', 'still known just before 7 days');
  now += 2;
  assert.equal(await seen.lookup('acme', 'S1'), undefined);
  assert.equal(await seen.sweep(), 1);
  assert.deepEqual(await store.db.keys().all(), [], 'the sweep leaves nothing behind');
  await store.close();
});

test('isSpoolId: the shape of the ids the forwarder mints (newQueueId), nothing else', () => {
  for (let i = 0; i < 50; i++) assert.ok(isSpoolId(newQueueId()));
  for (const bad of ['', 'S1', 'ABC123', `${newQueueId()}x`, newQueueId().toLowerCase(), 'AAAAAAAAAAAA!AAAAAAA', '0MX32MBYQ002F82557C3 '])
    assert.equal(isSpoolId(bad), false, JSON.stringify(bad));
});

test('token bucket: burst, then one token per 1/rate seconds', () => {
  let t = 0;
  const b = new TokenBucket({ ratePerSecond: 50, burst: 5, now: () => t });
  assert.equal(b.available(), 5);
  b.take(5);
  assert.equal(b.available(), 0);
  assert.equal(b.msUntilNext(), 20);
  t += 20;
  assert.equal(b.available(), 1);
  t += 10_000;
  assert.equal(b.available(), 5, 'never more than the burst');
  assert.equal(new TokenBucket({ ratePerSecond: 0, burst: 1, now: () => t }).available(), Infinity, 'rate 0 = no cap');
});
