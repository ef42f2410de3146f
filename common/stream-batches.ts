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
 *
 * Stages (`stagedBatches`): the checks and filters an intake runs over DATA (strict-data.ts,
 * spool-id.ts's filter, the header capture in smtp-intake.ts) are plain objects called on each
 * chunk of a batch, in order, rather than Transform streams piped one into the next. Why: each
 * Transform in the chain cost every message its construction, a pipe's listeners on both sides, a
 * write, a push and a 'data' event per chunk, and the end, finish and unpipe at the end of
 * DATA; the forwarder's one stage (the line-length check) was ~9% of its main thread taking 2 KB
 * messages over reused connections (0.173 against 0.190 ms a message, medians of nine rounds
 * with and without it; issue #17), and the listener ran three. The stages see the same chunks
 * in the same order, and what a stage holds back comes out at the end, as a Transform's flush.
 *
 * Side effects: puts the stream in flowing mode; destroys it when the consumer stops
 * early (as the stream's own iterator does), unless told not to.
 */
import { finished, type Readable } from 'node:stream';

/** The chunk batches a stream is read as (chunkBatches, stagedBatches). */
export type ChunkBatches = AsyncGenerator<Buffer[], void, undefined>;

/** One check or filter over a byte stream, called synchronously (see the header). */
export interface DataStage {
  /** What of `chunk` passes on: the chunk, a part or view of it, what it held joined to it; undefined or empty for nothing. */
  push(chunk: Buffer): Buffer | undefined;
  /** The end of the data: what the stage still held, if anything. */
  end(): Buffer | undefined;
}

/**
 * `chunks` through each stage in turn (empty results dropped, as a stream drops them); with
 * `ending`, each stage's end() after its chunks, its output going through the stages after it.
 */
export function throughStages(stages: readonly DataStage[], chunks: Buffer[], ending: boolean): Buffer[] {
  let through = chunks;
  for (let s = 0; s < stages.length; s++) {
    const stage = stages[s]!;
    const out: Buffer[] = [];
    for (let i = 0; i < through.length; i++) {
      const r = stage.push(through[i]!);
      if (r !== undefined && r.length > 0) out.push(r);
    }
    if (ending) {
      const r = stage.end();
      if (r !== undefined && r.length > 0) out.push(r);
    }
    through = out;
  }
  return through;
}

/**
 * The stream's chunk batches passed through `stages` (see the header). The stream is left
 * paused, not destroyed, when the consumer stops early: the caller decides what becomes of
 * the rest (an SMTP intake reads it to the final dot and throws it away).
 */
export function stagedBatches(stream: Readable, stages: readonly DataStage[]): ChunkBatches {
  return chunkBatches(stream, { destroyOnReturn: false, stages });
}

/** `stages`: each batch through them before it is handed over, in the same generator (no second one per stream). */
export async function* chunkBatches(stream: Readable, o: { destroyOnReturn?: boolean; stages?: readonly DataStage[] } = {}): ChunkBatches {
  const stages = o.stages !== undefined && o.stages.length > 0 ? o.stages : undefined;
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
        const out = stages ? throughStages(stages, batch, false) : batch;
        batch = [];
        queued = 0;
        if (!ended && !failure) stream.resume();
        if (out.length > 0) yield out;
        continue;
      }
      // As the stream's own iterator: what arrived before an error is handed over first.
      if (failure) throw failure;
      if (ended) {
        complete = true;
        const last = stages ? throughStages(stages, [], true) : [];
        if (last.length > 0) yield last;
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
