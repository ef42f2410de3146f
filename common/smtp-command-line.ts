/*
 * smtp-command-line.ts — smtp-server's parser (SMTPStream._write, command mode)
 * for the input chunk that is exactly one whole command line, the chunk every
 * lock-step client sends for each command (issue #17).
 *
 * Why: for every chunk the library turns the bytes into a string, appends it to
 * what it kept, makes a new /\r?\n/g, matches it, slices the line out and copies
 * it back into a new Buffer, and builds two closures, before it hands the line to
 * the connection; ~1.7 KB of the forwarder's JS heap a message at `-d` (three
 * commands) went to that. A chunk that holds one line ending in LF and nothing kept
 * from the chunk before is handed over here as a view of the chunk, with the same
 * bytes (the line without its CRLF or LF).
 *
 * The same, in what the connection and the stream's writer see: the line is dispatched
 * only where the library would dispatch it (command mode, parser not closed, line no
 * longer than `_maxCommandLength`; anything else, such as a partial line, several
 * lines, a line too long, goes to the library's own method); and the write is
 * finished once, after the command's continuation, and never inside the handler's
 * own call: when the handler continues synchronously the library's loop finishes the
 * write after the handler has returned, and so does this. With one line there is
 * nothing after it to dispatch, in either mode: the library's next pass finds no line
 * (command mode) or an empty rest (data mode), and finishes the write.
 * test/common/smtp-command-line.test.ts feeds the same chunks through this and the
 * library's method and compares the lines dispatched and when each write finished;
 * test/common/smtp-server-seam.test.ts checks that the parser's fields read here
 * (`_dataMode`, `isClosed`, `_remainder`, `_maxCommandLength`) still exist.
 */
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const LF = 0x0a;
const CR = 0x0d;

/**
 * Dispatches `chunk` to `parser.oncommand` when it is exactly one command line (see the
 * header) and calls `done` once the command has continued; false, with nothing done, otherwise.
 */
export function feedOneCommandLine(parser: SMTPStream, chunk: Buffer, done: () => void): boolean {
  const len = chunk.length;
  if (parser._dataMode || parser.isClosed || parser._remainder !== '' || len === 0 || chunk[len - 1] !== LF || chunk.indexOf(LF) !== len - 1) return false;
  const end = len >= 2 && chunk[len - 2] === CR ? len - 2 : len - 1;
  if (end > parser._maxCommandLength) return false;
  let inHandler = true;
  let continued = false;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    done();
  };
  parser.oncommand(chunk.subarray(0, end), () => {
    if (inHandler) continued = true;
    else finish();
  });
  inHandler = false;
  if (continued) finish();
  return true;
}
