/*
 * common/smtp-command-line.ts hands a chunk that is one whole command line to the
 * connection without smtp-server's string round trip. It must behave exactly as the
 * library's command-mode parser: these tests write the same chunks, one whole line
 * each and every other shape (several lines, partial lines, bare CR, empty lines,
 * lines at and over the length limit, DATA and its body, a parser closed by a
 * command), through a parser with and without it, with handlers that continue at
 * once and later, and compare every line dispatched and the moment each write
 * finished. A last check proves the one-line path is the one taken.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { feedOneCommandLine } from '../../common/smtp-command-line.js';
import { feedDataStream } from '../../common/smtp-data-feed.js';

type Next = (err?: Error | null) => void;

/** Writes `chunks` one after another (each after the previous write finished) and records what happened, in order. */
async function run(chunks: string[], fast: boolean): Promise<{ events: string[]; taken: number }> {
  const s = new SMTPStream();
  s._maxCommandLength = 16;
  s._feedDataStream = feedDataStream;
  const events: string[] = [];
  let taken = 0;
  // Both parsers note the moment their write finishes (as the connection's batch of replies ends there, smtp-server.ts).
  const write = s._write.bind(s);
  s._write = (chunk: Buffer, encoding: BufferEncoding, next: Next): void => {
    // The library passes the (empty) rest of a DATA line's chunk back to _write, which finishes it at
    // once and so its caller's: one write as far as the stream's writer can tell, noted once.
    if (chunk.length === 0) return write(chunk, encoding, next);
    const done: Next = (err) => {
      events.push('finished');
      next(err);
    };
    if (fast && feedOneCommandLine(s, chunk, done)) taken++;
    else write(chunk, encoding, done);
  };
  s.oncommand = (cmd: Buffer, cb?: () => void): void => {
    const line = cmd.toString('binary');
    events.push(`cmd ${JSON.stringify(line)}`);
    if (line === 'CLOSE') s.isClosed = true;
    if (line.startsWith('DATA')) {
      const ds = s.startDataMode(1000);
      const parts: Buffer[] = [];
      ds.on('data', (b: Buffer) => parts.push(b));
      ds.on('end', () => {
        events.push(`msg ${JSON.stringify(Buffer.concat(parts).toString('binary'))}`);
        s.continue();
      });
    }
    if (line.includes('LATER')) setImmediate(() => (events.push(`continue ${line}`), cb?.()));
    else {
      cb?.();
      events.push(`after continue ${line}`);
    }
  };
  s.on('error', (err: Error) => events.push(`error ${err.message}`));
  for (const [i, c] of chunks.entries()) {
    await new Promise<void>((resolve) =>
      s.write(Buffer.from(c, 'binary'), (err) => {
        events.push(`write ${i} done${err ? ` (${err.message})` : ''}`);
        resolve();
      }),
    );
    if (s.destroyed) break;
  }
  await new Promise((r) => setTimeout(r, 5));
  return { events, taken };
}

const CASES: Record<string, string[]> = {
  'lock-step lines': ['EHLO a\r\n', 'MAIL FROM:<a@b>\r\n', 'RCPT TO:<c@d>\r\n', 'NOOP\r\n'],
  'a handler that continues later': ['MAIL LATER\r\n', 'NOOP\r\n', 'RCPT LATER\r\n'],
  'LF without CR, an empty line, a bare CR inside': ['NOOP\n', '\r\n', '\n', 'A\rB\r\n', '\r\r\n'],
  'at and over the length limit': ['0123456789ABCDEF\r\n', '0123456789ABCDEF\n', '0123456789ABCDEFG\r\n', 'NOOP\r\n'],
  'several lines, partial lines, a line after a partial one': ['NOOP\r\nNOOP\r\n', 'MAIL FR', 'OM:<a@b>\r\n', 'RCPT\r', '\nNOOP\r\n', 'X\r\n'],
  'DATA and its body': ['DATA\r\n', 'Subject: x\r\n\r\nbody\r\n.\r\n', 'NOOP\r\n', 'DATA LATER\r\n', 'hello\r\n.\r\n', 'QUIT\r\n'],
  'DATA and the body in one chunk': ['DATA\r\nhi\r\n.\r\nNOOP\r\n', 'NOOP\r\n'],
  'a parser closed by a command': ['CLOSE\r\n', 'NOOP\r\n', 'NOOP\r\n'],
};

for (const [name, chunks] of Object.entries(CASES)) {
  test(`one-line chunks are parsed as smtp-server parses them: ${name}`, async () => {
    const lib = await run(chunks, false);
    const ours = await run(chunks, true);
    assert.deepEqual(ours.events, lib.events);
  });
}

test('the one-line path is taken for each whole line in command mode, and only there', async () => {
  const { taken } = await run(['EHLO a\r\n', 'NOOP\n', 'MAIL FR', 'OM:<a@b>\r\n', 'NOOP\r\nNOOP\r\n', 'DATA\r\n', 'x\r\n.\r\n', 'RCPT LATER\r\n'], true);
  // EHLO, the first NOOP, DATA, RCPT: not the completion of a partial line, not two lines, not the body.
  // (An over-long line fails the write in both parsers, and with it the stream: the cases above.)
  assert.equal(taken, 4);
});
