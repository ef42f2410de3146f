/*
 * log.ts — structured logs: pino, one JSON event per line on stdout.
 *
 * Every process makes one root logger with its `stage` (forwarder, listener,
 * engine, sink, up) and hands children down: one per SMTP session (`session`)
 * and per message (`queueId`). Side effects: writes to stdout.
 *
 * Each line is written to stdout before the call returns (a synchronous
 * destination), so a line logged before a reply is sent is in the kernel's hands
 * before the client reads the reply: the `accepted` line of every message that
 * got its `250` survives a SIGKILL a moment later, as Postfix's do (syslog(3)
 * hands each line to the kernel before smtpd answers). pino's default destination
 * writes through libuv's thread pool and holds the lines logged meanwhile in
 * memory: test/forwarder/log-durability.test.ts (16 SIGKILLs of a forwarder under
 * 20 Python smtplib clients) found 4, 8 and 20 of 3,355-4,169 acknowledged
 * messages without their `accepted` line in three runs with it, none with this
 * (issue #17, twenty-fifth round). What it costs: each line a write to the log's
 * file or pipe on the calling thread instead of a trip to the thread pool; the
 * forwarder's main thread per message at `-d` (relay paused, three interleaved
 * pairs) measured 0.159-0.202 ms with it and 0.152-0.211 without, its other
 * threads 0.036-0.053 against 0.047-0.083. A reader that stops reading (a full
 * pipe) holds the process, as a full syslog socket holds Postfix's daemons,
 * instead of the lines piling up in memory.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(stage: string, level: string): Logger {
  return pino(
    {
      level,
      base: { stage, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 1, sync: true }),
  );
}
