/*
 * log.ts — structured logs: pino, one JSON event per line on stdout.
 *
 * Every process makes one root logger with its `stage` (forwarder, listener,
 * engine, sink, up) and hands children down: one per SMTP session (`session`)
 * and per message (`queueId`). Side effects: writes to stdout.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(stage: string, level: string): Logger {
  return pino({
    level,
    base: { stage, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
