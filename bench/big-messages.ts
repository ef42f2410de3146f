/*
 * npm run bench -- big-messages: memory with large messages in parallel
 * (issue #17). `postino up` with its defaults delivering to Postfix's
 * smtp-sink; Postfix's smtp-source sends N messages of 10 MB over N parallel
 * sessions, for N = 10 and N = 100; the resident memory of each process is
 * sampled every 100 ms. Flat means the peak with 100 at once is about the
 * peak with 10: bodies stream to disk and are read back in chunks, never held
 * whole per session, per copy or per queue entry.
 */
import { tempDir, upConfig } from '../test/helpers/postino.js';
import { processRssMiB, smtpSource, startSmtpSink, startUpLoggingToFile, upChildren } from './pipeline-parts.js';
import { postfixReady } from './postfix-peer.js';
import { fmt } from './stats.js';

const SIZE = 10 * 1024 * 1024;
const PARALLEL = [10, 100];
const ROLES = ['forwarder', 'hosted', 'sink'] as const;
type Peaks = Record<(typeof ROLES)[number], number>;

async function run(n: number): Promise<{ peaks: Peaks; seconds: number }> {
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
    await smtpSource(c.ports.forwarder, { sessions: n, size: SIZE, messages: n, reuse: false });
    while (sink.received() < n && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 100));
    clearInterval(sampler);
    if (sink.received() < n) throw new Error(`smtp-sink counted ${sink.received()} of ${n}`);
    return { peaks, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await up.stop();
    sink.stop();
  }
}

export async function benchBigMessages(): Promise<void> {
  if (!postfixReady()) return;
  const results = [];
  for (const n of PARALLEL) results.push({ n, ...(await run(n)) });
  console.log(`${SIZE / 1024 / 1024} MB messages, all sessions at once, postino up defaults → smtp-sink; peak RSS per process (MiB)`);
  console.log(`${'parallel'.padEnd(10)} ${'forwarder'.padStart(10)} ${'hosted'.padStart(8)} ${'sink'.padStart(6)} ${'all delivered'.padStart(14)}`);
  for (const r of results) console.log(`${String(r.n).padEnd(10)} ${fmt(r.peaks.forwarder).padStart(10)} ${fmt(r.peaks.hosted).padStart(8)} ${fmt(r.peaks.sink).padStart(6)} ${`${fmt(r.seconds)} s`.padStart(14)}`);
  const [few, many] = results;
  for (const r of ROLES) console.log(`${r}: ${PARALLEL[1]} at once peak ${fmt(many!.peaks[r])} MiB vs ${PARALLEL[0]} at once ${fmt(few!.peaks[r])} MiB (×${(many!.peaks[r] / few!.peaks[r]).toFixed(2)})`);
}
