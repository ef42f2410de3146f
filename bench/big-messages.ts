/*
 * npm run bench -- big-messages: memory with large messages in parallel
 * (issue #17). `postino up` with its defaults delivering to Postfix's
 * smtp-sink; Postfix's smtp-source sends N messages of 10 MB over N parallel
 * sessions, for N = 10 and N = 100; the resident memory of each process is
 * sampled every 100 ms. Flat means the peak with 100 at once is about the
 * peak with 10: bodies stream to disk and are read back in chunks, never held
 * whole per session, per copy or per queue entry.
 * A middle row sends 100 messages over 10 sessions: the same bytes as the
 * 100-at-once row, so what differs between those two rows is what parallelism
 * costs, and what differs from the first row is what volume costs (chunks
 * already written but not yet collected: V8 frees Buffers' memory at its next
 * GC, which external memory triggers only after tens of MB).
 */
import { removeTempDir, tempDir, upConfig } from '../test/helpers/postino.js';
import { processRssMiB, smtpSource, startSmtpSink, startUpLoggingToFile, upChildren } from './pipeline-parts.js';
import { postfixReady } from './postfix-peer.js';
import { fmt } from './stats.js';

const SIZE = 10 * 1024 * 1024;
/** Sessions at once and messages in all; the first and the last row are the acceptance figures of issue #17. */
const RUNS = [
  { sessions: 10, messages: 10 },
  { sessions: 10, messages: 100 },
  { sessions: 100, messages: 100 },
];
const ROLES = ['forwarder', 'hosted', 'sink'] as const;
type Peaks = Record<(typeof ROLES)[number], number>;

async function run(n: number, sessions = n): Promise<{ peaks: Peaks; seconds: number }> {
  const dataDir = tempDir('bench-big');
  const sink = await startSmtpSink();
  const c = await upConfig(() => ({ log: { level: 'warn' }, delivery: { relays: [`smtp://127.0.0.1:${sink.port}`] } }));
  const up = await startUpLoggingToFile(dataDir, c.config, [c.ports.forwarder, c.ports.listener, c.ports.http, c.ports.sink]);
  try {
    const pids = await upChildren(up.child.pid!);
    const peaks: Peaks = { forwarder: 0, hosted: 0, sink: 0 };
    const sample = (): void => {
      for (const r of ROLES) if (pids[r]) peaks[r] = Math.max(peaks[r], processRssMiB(pids[r]!));
    };
    sample();
    const sampler = setInterval(sample, 100);
    const t0 = Date.now();
    await smtpSource(c.ports.forwarder, { sessions, size: SIZE, messages: n, reuse: false });
    while (sink.received() < n && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
    clearInterval(sampler);
    if (sink.received() < n) throw new Error(`smtp-sink counted ${sink.received()} of ${n}`);
    return { peaks, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await up.stop();
    sink.stop();
    removeTempDir(dataDir);
  }
}

export async function benchBigMessages(): Promise<void> {
  if (!postfixReady()) return;
  const results = [];
  for (const r of RUNS) results.push({ ...r, ...(await run(r.messages, r.sessions)) });
  console.log(`${SIZE / 1024 / 1024} MB messages, postino up defaults → smtp-sink; peak RSS per process (MiB)`);
  console.log(`${'at once'.padEnd(8)} ${'messages'.padStart(8)} ${'forwarder'.padStart(10)} ${'hosted'.padStart(8)} ${'sink'.padStart(6)} ${'all delivered'.padStart(14)}`);
  for (const r of results) console.log(`${String(r.sessions).padEnd(8)} ${String(r.messages).padStart(8)} ${fmt(r.peaks.forwarder).padStart(10)} ${fmt(r.peaks.hosted).padStart(8)} ${fmt(r.peaks.sink).padStart(6)} ${`${fmt(r.seconds)} s`.padStart(14)}`);
  const few = results[0]!;
  const many = results.at(-1)!;
  for (const r of ROLES) console.log(`${r}: ${many.sessions} at once peak ${fmt(many.peaks[r])} MiB vs ${few.sessions} at once ${fmt(few.peaks[r])} MiB (×${(many.peaks[r] / few.peaks[r]).toFixed(2)}, +${fmt(many.peaks[r] - few.peaks[r])} MiB)`);
}
