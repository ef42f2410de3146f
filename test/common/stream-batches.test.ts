/* stream-batches.ts: the chunks as pushed (the same Buffers, in order), memory bounded, errors and early stops as a stream's own iterator. */
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { test } from 'node:test';
import { chunkBatches, stagedBatches, type DataStage } from '../../common/stream-batches.js';
import { seededRandom } from '../helpers/random.js';

test('every chunk handed over as it was pushed, no copy, in order, whatever the pace of producer and consumer', async () => {
  const rnd = seededRandom(0xba7c);
  for (let round = 0; round < 30; round++) {
    const pushed: Buffer[] = [];
    const src = new PassThrough();
    const n = 1 + Math.floor(rnd() * 200);
    void (async () => {
      for (let i = 0; i < n; i++) {
        const c = Buffer.alloc(1 + Math.floor(rnd() * 5000), i % 251);
        pushed.push(c);
        if (!src.write(c)) await new Promise((r) => src.once('drain', r));
        if (rnd() < 0.3) await turn();
      }
      src.end();
    })();
    const got: Buffer[] = [];
    let batches = 0;
    for await (const batch of chunkBatches(src)) {
      batches++;
      got.push(...batch);
      if (rnd() < 0.5) for (let k = Math.floor(rnd() * 4); k > 0; k--) await turn();
    }
    assert.equal(got.length, pushed.length, `round ${round}`);
    got.forEach((c, i) => assert.equal(c, pushed[i], `round ${round}: chunk ${i} is the very Buffer pushed`));
    assert.ok(batches <= got.length);
  }
});

test('a consumer slower than the stream: it is paused past its high-water mark, so what waits stays bounded', async () => {
  let made = 0;
  const src = new Readable({
    highWaterMark: 16 * 1024,
    read() {
      if (made === 400) return void this.push(null);
      made++;
      this.push(Buffer.alloc(1024));
    },
  });
  let taken = 0;
  let most = 0;
  let largest = 0;
  for await (const batch of chunkBatches(src)) {
    taken += batch.length;
    largest = Math.max(largest, batch.length);
    most = Math.max(most, made - taken);
    for (let k = 0; k < 3; k++) await turn();
  }
  assert.equal(taken, 400);
  assert.ok(largest > 1, 'chunks that arrived while the consumer was away came as one batch');
  // The mark (16 chunks) in the stream's buffer plus one batch of at most the mark, and the chunk in hand.
  assert.ok(most <= 34, `at most ${most} chunks waited`);
});

test('an error after some data: the data first, then the error; a premature close is an error too', async () => {
  const src = new PassThrough();
  src.write(Buffer.from('a'));
  src.write(Buffer.from('b'));
  setTimeout(() => src.destroy(new Error('connection reset')), 20);
  const got: string[] = [];
  await assert.rejects(async () => {
    for await (const batch of chunkBatches(src)) got.push(...batch.map((c) => c.toString()));
  }, /connection reset/);
  assert.deepEqual(got, ['a', 'b']);

  const closed = new PassThrough();
  setTimeout(() => closed.destroy(), 20);
  await assert.rejects(async () => {
    for await (const _ of chunkBatches(closed));
  }, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
});

test('an empty stream gives no batch; stopping early destroys the stream unless told not to, and then the rest is still there', async () => {
  let count = 0;
  for await (const _ of chunkBatches(Readable.from([], { objectMode: false }))) count++;
  assert.equal(count, 0);

  const a = new PassThrough();
  a.write(Buffer.from('first'));
  for await (const _ of chunkBatches(a)) break;
  assert.equal(a.destroyed, true);

  const b = new PassThrough();
  b.write(Buffer.from('first'));
  for await (const _ of chunkBatches(b, { destroyOnReturn: false })) break;
  assert.equal(b.destroyed, false);
  b.end(Buffer.from('second'));
  await turn();
  const rest: string[] = [];
  for await (const c of b) rest.push((c as Buffer).toString());
  assert.deepEqual(rest, ['second'], 'nothing dropped after the early stop');
});

/** Holds back each chunk's last byte until the next chunk or the end (as the spool-id filter holds a partial line). */
class HoldLast implements DataStage {
  private held = Buffer.alloc(0);
  push(chunk: Buffer): Buffer {
    const all = Buffer.concat([this.held, chunk]);
    this.held = all.subarray(all.length - 1);
    return all.subarray(0, all.length - 1);
  }
  end(): Buffer {
    return this.held;
  }
}

/** Drops every chunk after the first holding an 'x' (as the strict check stops passing data at its first violation). */
class StopAtX implements DataStage {
  stopped = false;
  push(chunk: Buffer): Buffer | undefined {
    if (chunk.includes('x')) this.stopped = true;
    return this.stopped ? undefined : chunk;
  }
  end(): undefined {
    return undefined;
  }
}

test('stagedBatches: every chunk through the stages in order, what a stage holds flushed at the end through the stages after it', async () => {
  const rnd = seededRandom(0x57a6);
  for (let round = 0; round < 50; round++) {
    const src = new PassThrough();
    const text = Array.from({ length: 1 + Math.floor(rnd() * 60) }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    void (async () => {
      for (let p = 0; p < text.length; ) {
        const n = 1 + Math.floor(rnd() * 7);
        src.write(Buffer.from(text.slice(p, p + n)));
        p += n;
        if (rnd() < 0.3) await turn();
      }
      src.end();
    })();
    let out = '';
    for await (const batch of stagedBatches(src, [new HoldLast(), new HoldLast()])) {
      assert.ok(batch.every((c) => c.length > 0), 'no empty chunk handed over');
      out += batch.map((c) => c.toString()).join('');
    }
    assert.equal(out, text, `round ${round}: the second stage's held byte came out of the first's end`);
  }
  const dropped = new StopAtX();
  const got: string[] = [];
  for await (const batch of stagedBatches(Readable.from([Buffer.from('ab'), Buffer.from('cxd'), Buffer.from('ef')], { objectMode: false }), [dropped])) got.push(...batch.map((c) => c.toString()));
  assert.deepEqual(got, ['ab'], 'a stage that passes nothing more ends the output, the stream is still read to its end');
});

test('stagedBatches: stopping early leaves the stream paused, not destroyed, for the caller to drain', async () => {
  const s = new PassThrough();
  s.write(Buffer.from('first'));
  for await (const _ of stagedBatches(s, [new HoldLast()])) break;
  assert.equal(s.destroyed, false);
  assert.equal(s.isPaused(), true);
  s.end(Buffer.from('rest'));
  await turn();
  const rest: string[] = [];
  for await (const c of s) rest.push((c as Buffer).toString());
  assert.deepEqual(rest, ['rest']);
});
