/*
 * recent-blobs.ts through the store and the queue: a blob file written moments
 * ago reads on the calling thread — its first chunk is there at the first
 * read(), where an fs.ReadStream has nothing until the thread pool answered —
 * byte for byte as the file, for any range; an old file, or one removed, reads
 * through the thread pool as before; a file gone behind the store's back fails
 * with ENOENT either way.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { DurableQueue } from '../../common/durable-queue.js';
import { writeFileSynced } from '../../common/fsync.js';
import { RECENT_MS, RecentBlobs } from '../../common/recent-blobs.js';
import { BLOB_READ_BYTES, Store } from '../../common/store.js';
import { tempDir } from '../helpers/postino.js';

const KiB = 1024;

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** `body` in 16 KiB chunks and odd sizes, as a TLS socket and a data feed hand them over. */
function* chunked(body: Buffer): Generator<Buffer> {
  for (let at = 0, i = 0; at < body.length; i++) {
    const n = 16 * KiB - (i % 7);
    yield body.subarray(at, at + n);
    at += n;
  }
}

async function writeBlob(store: Store, name: string, body: Buffer): Promise<void> {
  await writeFileSynced(store.blobPath(name), chunked(body));
  store.markBlobCreated(name);
}

test('a blob written moments ago reads on the calling thread, byte for byte as the file, for any range', async () => {
  const store = await Store.open(tempDir('recent-blobs'));
  try {
    const body = randomBytes(1024 * KiB + 12_345);
    await writeBlob(store, 'a', body);
    const s = store.readBlob('a');
    const first = s.read() as Buffer | null;
    assert.ok(first, 'the first chunk at the first read(), no trip to the thread pool');
    assert.equal(first.length, BLOB_READ_BYTES, 'read in the store chunk size');
    assert.ok(Buffer.concat([first, await collect(s)]).equals(body));
    const ranges: Array<[number, number | undefined]> = [[0, undefined], [0, 1], [1, 16 * KiB + 3], [BLOB_READ_BYTES - 1, BLOB_READ_BYTES + 1], [300_000, 900_000], [body.length - 10, body.length], [body.length - 10, body.length + 50], [500, 500]];
    for (let i = 0; i < 30; i++) {
      const a = (i * 104_729) % body.length;
      ranges.push([a, Math.min(body.length, a + ((i * 7_919) % (300 * KiB)))]);
    }
    for (const [from, to] of ranges) {
      const want = body.subarray(from, to ?? body.length);
      assert.ok((await collect(store.readBlob('a', from, to))).equals(want), `stream ${from}-${to}`);
      if (to !== undefined) assert.ok((await store.readBlobRange('a', from, to)).equals(want), `range ${from}-${to}`);
    }
    // Gone behind the store's back: the error a ReadStream gives.
    fs.rmSync(store.blobPath('a'));
    await assert.rejects(collect(store.readBlob('a')), /ENOENT/);
  } finally {
    await store.close();
  }
});

test('an old or removed blob reads through the thread pool as before, the same bytes', async () => {
  let now = 1_000_000;
  const dir = tempDir('recent-blobs-old');
  fs.mkdirSync(dir, { recursive: true });
  const recent = new RecentBlobs((n) => `${dir}/${n}`, 64 * KiB, () => now);
  const body = randomBytes(200 * KiB);
  fs.writeFileSync(`${dir}/x`, body);
  recent.add('x');
  assert.ok(recent.stream('x'));
  now += RECENT_MS + 1;
  assert.equal(recent.stream('x'), undefined, 'past RECENT_MS');
  assert.equal(recent.read('x', 0, 10), undefined);

  const store = await Store.open(tempDir('recent-blobs-store'));
  try {
    await writeBlob(store, 'b', body);
    await writeBlob(store, 'c', body);
    await store.removeBlob('b');
    assert.equal(fs.existsSync(store.blobPath('b')), false);
    await store.removeBlob('b'); // already gone: no error
    // Not written through the store (a file found at start-up): the thread pool's ReadStream.
    fs.copyFileSync(store.blobPath('c'), store.blobPath('d'));
    const s = store.readBlob('d');
    assert.ok(s instanceof fs.ReadStream);
    assert.equal(s.read(), null, 'nothing before the thread pool answered');
    assert.ok((await collect(s)).equals(body));
    assert.ok((await store.readBlobRange('d', 10, 70_000)).equals(body.subarray(10, 70_000)));
  } finally {
    await store.close();
  }
});

test('through the queue: a spilled body is read back for sending on the calling thread; a stream given up closes its file', async () => {
  const store = await Store.open(tempDir('recent-blobs-queue'));
  try {
    const q = await DurableQueue.open<{ n: number }>(store, 'spool');
    const body = randomBytes(600 * KiB);
    const rec = await q.enqueue({ meta: { n: 1 }, body: Readable.from(chunked(body)) });
    assert.equal(rec.body.kind, 'file');
    const sendable = (await q.sendableBody(rec)) as Readable;
    assert.ok(!Buffer.isBuffer(sendable));
    assert.ok(sendable.read(), 'the first chunk at once');
    // Given up after one chunk (a session that failed): the descriptor is closed, none leaks.
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 50; i++) {
      const r = (await q.sendableBody(rec)) as Readable;
      r.read();
      r.destroy();
    }
    await new Promise((r) => setImmediate(r));
    assert.ok(fs.readdirSync('/proc/self/fd').length <= fdsBefore + 2, 'descriptors closed on destroy');
    sendable.destroy();
    assert.ok((await collect((await q.sendableBody(rec)) as Readable)).equals(body));
  } finally {
    await store.close();
  }
});
