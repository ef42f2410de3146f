/*
 * stream-batches.ts — a byte stream read as the chunks it pushed, handed over in
 * batches: every chunk that arrived while the consumer was busy, in one array.
 *
 * Why (issue #17): a Readable's own async iterator calls read(), which returns all
 * that is buffered as one new Buffer. The intake's consumer (durable-queue.ts
 * readSmallOrSpill) awaits a file write between reads, finds several TLS-record-sized
 * chunks waiting, and paid a copy of them: `fromList` and its allocation were 2–2.5%
 * of each process's CPU at 1 MB in the pipeline benchmark, plus the garbage. In
 * flowing mode a stream emits each chunk as pushed; queued here, they are handed
 * over as they are, with no copy. Batches rather than single chunks because a body
 * of dot-led lines arrives as one tiny chunk per line (tens of thousands per MB):
 * one await per chunk would cost more than the copy did.
 *
 * Memory is bounded as with the stream's own iterator: past its high-water mark the
 * stream is paused until the consumer takes the batch.
 * Side effects: puts the stream in flowing mode; destroys it when the consumer stops
 * early (as the stream's own iterator does), unless told not to.
 */
import { finished, type Readable } from 'node:stream';

export async function* chunkBatches(stream: Readable, o: { destroyOnReturn?: boolean } = {}): AsyncGenerator<Buffer[], void, undefined> {
  let batch: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const limit = Math.max(1, stream.readableHighWaterMark);
  const onData = (chunk: Buffer): void => {
    batch.push(chunk);
    queued += chunk.length;
    if (queued >= limit) stream.pause();
    wake?.();
  };
  const stop = finished(stream, { writable: false }, (err) => {
    if (err) failure = err;
    else ended = true;
    wake?.();
  });
  stream.on('data', onData);
  stream.resume();
  let complete = false;
  try {
    for (;;) {
      if (batch.length > 0) {
        const out = batch;
        batch = [];
        queued = 0;
        if (!ended && !failure) stream.resume();
        yield out;
        continue;
      }
      // As the stream's own iterator: what arrived before an error is handed over first.
      if (failure) throw failure;
      if (ended) {
        complete = true;
        return;
      }
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    stream.off('data', onData);
    stop();
    if (!complete && (o.destroyOnReturn ?? true)) stream.destroy();
    else stream.pause(); // flowing without a 'data' listener would drop what comes next
  }
}
