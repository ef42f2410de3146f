/*
 * npm run bench -- forwarder-parts: the forwarder's two halves measured apart,
 * as CPU per message of its main thread (the event loop, the limit of one Node
 * process on 2 cores) and of its other threads (libuv's pool: LevelDB, files;
 * V8's helpers), at its defaults (log level info, stdout to a file) with 2 KB
 * messages over reused connections (smtp-source -d, 20 sessions), relaying to
 * Postfix's smtp-sink:
 *   intake  the relay paused (kill-switch, POST /pause): messages/s taken
 *   drain   then resumed (POST /resume), nothing arriving: messages/s relayed
 *   both    a second load with the relay running, as `bench -- forwarder`'s
 *           -d load (intake messages/s; CPU until the spool is empty again)
 *   floor   the same load against intake-floor.ts, a bare Node responder that
 *           group-commits each body to LevelDB before its 250: what the
 *           forwarder's intake spends above it is its own code, and no Node
 *           intake on this machine goes below it
 *   +queue  the same responder spooling with the forwarder's store, queue and
 *           `accepted` log line (intake-floor.ts `queue`)
 *   +stream and reading the body as the intake does, a stream opened at DATA
 *           (`stream`): what `intake` spends above this row is its SMTP layer
 * Why apart: per-thread CPU per message moves far less from run to run than
 * throughput on a shared machine, so a change to either path is judged by it
 * (issue #17: the relay's body streams were found and measured this way).
 * Knobs (environment): BENCH_FWD_PARTS_MESSAGES (15000), BENCH_FWD_PARTS_RUNS (3),
 * BENCH_FWD_PARTS_SIZE (message bytes, 2048), BENCH_FWD_PARTS_REUSE (0: one message per connection; 1);
 * BENCH_CPU_PROF_DIR and BENCH_NODE_FLAGS as in `bench -- pipeline` (pipeline-parts.ts benchNodeFlags).
 * Needs Debian's postfix package (smtp-source, smtp-sink); root, as smtp-sink
 * is started as user postfix (pipeline-parts.ts startSmtpSink).
 * Side effects: a temp dir, processes it starts and stops by pid.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FloorMode } from './intake-floor.js';
import { freePorts } from '../test/helpers/ports.js';
import { spawnFloor } from './floor-process.js';
import { forwarderAdmin, forwarderQueueEmpty, startForwarder, waitUntil } from './forwarder-vs-postfix.js';
import { smtpSource, startSmtpSink, stopChild, threadCpuSeconds, type SourceLoad } from './pipeline-parts.js';
import { postfixBenchDir } from './postfix-peer.js';
import { fmt } from './stats.js';

const MESSAGES = Number(process.env.BENCH_FWD_PARTS_MESSAGES ?? 15_000);
const RUNS = Number(process.env.BENCH_FWD_PARTS_RUNS ?? 3);
const SIZE = Number(process.env.BENCH_FWD_PARTS_SIZE ?? 2048);
const REUSE = process.env.BENCH_FWD_PARTS_REUSE !== '0';
/** Unmeasured messages first: a fifth of the measured ones (3,000 at the defaults). */
const WARMUP = Math.ceil(MESSAGES / 5);

interface Part {
  rate: number;
  /** CPU milliseconds per message. */
  main: number;
  others: number;
}

/** Runs `work`, which answers the seconds its rate is over; CPU per message is over all of it. */
async function measure(pid: number, messages: number, work: () => Promise<number>): Promise<Part> {
  const c0 = threadCpuSeconds(pid);
  const secs = await work();
  const c1 = threadCpuSeconds(pid);
  return { rate: messages / secs, main: ((c1.main - c0.main) * 1000) / messages, others: ((c1.others - c0.others) * 1000) / messages };
}

async function timed(f: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
}

function line(name: string, ps: Part[]): string {
  const med = (k: keyof Part): number => [...ps].map((p) => p[k]).sort((a, b) => a - b)[Math.floor(ps.length / 2)]!;
  const all = (k: keyof Part, d: number): string => ps.map((p) => fmt(p[k], d)).join(' / ');
  return `  ${name.padEnd(7)} ${fmt(med('rate'), 0).padStart(6)} msgs/s   main thread ${fmt(med('main'), 3)} ms/msg   other threads ${fmt(med('others'), 3)} ms/msg   (runs: ${all('rate', 0)} msgs/s; main ${all('main', 3)})`;
}

/** The floor rows: intake-floor.ts's modes, in the order printed. */
const FLOORS: ReadonlyArray<{ row: string; mode: FloorMode; what: string }> = [
  { row: 'floor', mode: 'raw', what: 'bare Node responder + LevelDB group commit, intake-floor.ts' },
  { row: '+queue', mode: 'queue', what: "the floor spooling with the forwarder's store, queue and accepted line" },
  { row: '+stream', mode: 'stream', what: 'and the body read from a stream as the intake reads it' },
];

export async function benchForwarderParts(): Promise<void> {
  const base = postfixBenchDir('fwd-parts');
  if (!base) return;
  const sink = await startSmtpSink();
  const load: SourceLoad = { sessions: 20, size: SIZE, messages: MESSAGES, reuse: REUSE };
  const parts = { intake: [] as Part[], drain: [] as Part[], both: [] as Part[], floors: FLOORS.map(() => [] as Part[]) };
  try {
    for (let run = 0; run < RUNS; run++) {
      const dir = path.join(base, `run-${run}`);
      const [port, adminPort] = (await freePorts(2)) as [number, number];
      const fwd = await startForwarder(dir, port, adminPort, sink.port);
      const pid = fwd.pid!;
      const drained = (): Promise<void> => waitUntil(() => forwarderQueueEmpty(adminPort, dir), 600_000);
      try {
        // Unmeasured: V8 compiles the hot paths of both halves.
        await smtpSource(port, { ...load, messages: WARMUP });
        await drained();
        await forwarderAdmin(adminPort, dir, 'POST', '/pause');
        parts.intake.push(await measure(pid, MESSAGES, () => timed(() => smtpSource(port, load))));
        parts.drain.push(
          await measure(pid, MESSAGES, () =>
            timed(async () => {
              await forwarderAdmin(adminPort, dir, 'POST', '/resume');
              await drained();
            }),
          ),
        );
        parts.both.push(
          await measure(pid, MESSAGES, async () => {
            const intakeSecs = await timed(() => smtpSource(port, load));
            await drained();
            return intakeSecs;
          }),
        );
      } finally {
        await stopChild(fwd);
      }
      for (const [i, f] of FLOORS.entries()) {
        const [floorPort] = (await freePorts(1)) as [number];
        const floor = await spawnFloor(floorPort, path.join(dir, `floor-${f.mode}`), f.mode);
        try {
          await smtpSource(floorPort, { ...load, messages: WARMUP });
          parts.floors[i]!.push(await measure(floor.pid!, MESSAGES, () => timed(() => smtpSource(floorPort, load))));
        } finally {
          await stopChild(floor);
        }
      }
    }
    const over = REUSE ? '20 reused connections (smtp-source -d)' : '20 sessions, one message per connection';
    console.log(`forwarder at its defaults, ${fmt(SIZE / 1024, 0)} KB × ${MESSAGES} over ${over}, relaying to smtp-sink; medians of ${RUNS} runs, CPU per message from /proc/<pid>/task:`);
    console.log(line('intake', parts.intake) + '   [relay paused]');
    console.log(line('drain', parts.drain) + '   [relay resumed, nothing arriving]');
    console.log(line('both', parts.both) + '   [intake rate; CPU until the spool is empty]');
    for (const [i, f] of FLOORS.entries()) console.log(line(f.row, parts.floors[i]!) + `   [${f.what}]`);
  } finally {
    sink.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}
