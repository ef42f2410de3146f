/*
 * log.ts — structured logs: pino, one JSON event per line on stdout.
 *
 * Every process makes one root logger with its `stage` (forwarder, listener,
 * engine, sink, up) and hands children down: one per SMTP session (`session`)
 * and per message (`queueId`). Side effects: writes to stdout.
 *
 * Each line reaches stdout before the process goes back to the event loop: the lines
 * of one turn are written together by one write(2) on the calling thread at its end
 * (TurnBatch below), and the intake awaits linesWritten() before it answers, so the
 * `accepted` line of every message that got its `250` is in the kernel's hands before
 * the client reads the reply and survives a SIGKILL a moment later, as Postfix's do
 * (syslog(3) hands each line to the kernel before smtpd answers). pino's default
 * destination writes through libuv's thread pool and holds the lines logged meanwhile
 * in memory: test/forwarder/log-durability.test.ts (16 SIGKILLs of a forwarder under
 * 20 Python smtplib clients) found 4, 8 and 20 of 3,355-4,169 acknowledged messages
 * without their `accepted` line in three runs with it, none with a synchronous write
 * (issue #17, twenty-fifth round) nor with this. One write per turn rather than per
 * line because a group commit acknowledges its messages in one turn: in 1.5 s of an
 * smtp-source `-d` round under strace (relay paused) the forwarder's main thread made
 * 1,769 log writes with a write per line and 246 with the batch, for about as many
 * replies (4,849 and 4,337; issue #17, twenty-ninth round). A reader that stops reading
 * (a full pipe) holds the process, as a full syslog socket holds Postfix's daemons,
 * instead of the lines piling up in memory.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

type Destination = ReturnType<typeof pino.destination>;

/**
 * The lines logged in one turn of the event loop, written together at its end: one write(2)
 * for a group commit's worth of `accepted` lines instead of one each. A caller that must have
 * its line in the kernel's hands before it answers awaits `linesWritten()` (smtp-intake.ts,
 * before the 250). Every line still reaches the kernel before the process goes back to the
 * event loop, so before any I/O the line could race with; a SIGKILL in the same turn loses the
 * lines of that turn, whose replies have not been sent either.
 */
class TurnBatch {
  private lines: string[] = [];
  private waiting: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly out: Destination) {}

  write(line: string): void {
    this.lines.push(line);
    if (this.lines.length === 1) queueMicrotask(() => this.flush());
  }

  /** Writes what the turn logged; `cb` as pino's `logger.flush(cb)` passes it. */
  flush(cb?: (err?: Error) => void): void {
    if (this.lines.length > 0) {
      const chunk = this.lines.join('');
      const wake = this.wake;
      this.lines = [];
      this.waiting = this.wake = undefined;
      try {
        this.out.write(chunk);
      } finally {
        // A log that cannot be written (stdout closed) does not hold the replies waiting on it,
        // as Postfix answers when syslog is gone; the write's error is still thrown.
        wake?.();
      }
    }
    cb?.();
  }

  written(): Promise<void> {
    if (this.lines.length === 0) return DONE;
    return (this.waiting ??= new Promise<void>((resolve) => (this.wake = resolve)));
  }
}

const DONE = Promise.resolve();

let stampMs = -1;
let stamp = '';
/**
 * pino's `isoTime` (the same `,"time":"<ISO 8601>"` fragment), formatted once a millisecond: the
 * `accepted` lines of a group commit are logged in the same turn and mostly share one. A new Date
 * and its toISOString per line were ~1.5 µs of the forwarder's main thread a message at `-d`
 * (issue #17, thirty-second round).
 */
export function isoTimeStamp(): string {
  const now = Date.now();
  if (now !== stampMs) {
    stampMs = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}
// One per process (or worker thread): every logger made here writes through it, in order.
let stdout: TurnBatch | undefined;

/** Resolves once every line logged so far is written to stdout. */
export function linesWritten(): Promise<void> {
  return stdout ? stdout.written() : DONE;
}

export function createLogger(stage: string, level: string): Logger {
  if (!stdout) {
    const batch = (stdout = new TurnBatch(pino.destination({ dest: 1, sync: true })));
    // An exit in the middle of a turn (process.exit after a fatal line) still writes it.
    process.on('exit', () => batch.flush());
  }
  return pino(
    {
      level,
      base: { stage, pid: process.pid },
      timestamp: isoTimeStamp,
      formatters: { level: (label) => ({ level: label }) },
    },
    stdout,
  );
}
