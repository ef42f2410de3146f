/*
 * intake-floor.ts — the least a single-threaded Node intake does per message,
 * as a yardstick for the forwarder's (`bench -- forwarder-parts`' `floor` row).
 *
 * A bare lock-step SMTP responder: a reply per command, the body kept as one
 * Buffer, and every body written to LevelDB with its envelope in a group
 * commit (one synced batch for the messages that end while the previous batch
 * is being written), the 250 after the batch is on disk — the forwarder's
 * guarantee with none of its work: no parser library, no checks, no log, no
 * queue index, no relay. What the forwarder's main thread spends per message
 * above this row's is its own code; below it no Node intake on the same
 * machine can go. Measured on the project's 2-core VM (issue #17, thirtieth
 * round): this floor 0.074-0.088 ms a message on the main thread at
 * 6,551-7,800 msgs/s, the forwarder's intake 0.13-0.19 ms at 4,300-6,900. A
 * scratch version with its SMTP sessions on a worker thread was no faster
 * (6,800-7,200 against 6,800-8,200 on one thread: the second core is
 * smtp-source's, and the thread hops lengthen each message's lock-step chain).
 *
 * Not a mail server: no dot-unstuffing, no limits, one process for a benchmark.
 * Run as `node --import tsx bench/intake-floor.ts <port> <dir>`; prints
 * "listening" when ready. Side effects: a LevelDB database in <dir>.
 */
import net from 'node:net';
import { ClassicLevel } from 'classic-level';
// The forwarder's write buffer, so LevelDB flushes its memtable as often.
import { WRITE_BUFFER_BYTES } from '../common/store.js';

interface Waiting {
  key: string;
  meta: Buffer;
  body: Buffer;
  ack: () => void;
}

async function serveFloor(port: number, dir: string): Promise<void> {
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer', writeBufferSize: WRITE_BUFFER_BYTES });
  await db.open();
  let seq = 0;
  let waiting: Waiting[] = [];
  let writing = false;

  async function commitAll(): Promise<void> {
    writing = true;
    while (waiting.length > 0) {
      const group = waiting;
      waiting = [];
      const batch = db.batch();
      for (const w of group) batch.put(`m!${w.key}`, w.meta).put(`b!${w.key}`, w.body);
      await batch.write({ sync: true });
      for (const w of group) w.ack();
    }
    writing = false;
  }

  function spool(from: string, to: string[], body: Buffer, ack: () => void): void {
    const key = String(++seq).padStart(12, '0');
    waiting.push({ key, meta: Buffer.from(JSON.stringify({ from, to, at: Date.now() })), body, ack });
    if (!writing) void commitAll();
  }

  const server = net.createServer((socket) => {
    let pending: Buffer = Buffer.alloc(0);
    let inData = false;
    let body: Buffer[] = [];
    let from = '';
    let to: string[] = [];
    const reply = (text: string): void => void socket.write(text);
    socket.on('error', () => undefined);
    reply('220 floor ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
      for (;;) {
        if (inData) {
          // The body ends at CRLF.CRLF; the CRLF before the dot belongs to the body.
          const end = pending.indexOf('\r\n.\r\n');
          if (end < 0) {
            // Keep the last four octets: the terminator may straddle two reads.
            const keep = Math.min(4, pending.length);
            body.push(pending.subarray(0, pending.length - keep));
            pending = Buffer.from(pending.subarray(pending.length - keep));
            return;
          }
          body.push(pending.subarray(0, end + 2));
          pending = pending.subarray(end + 5);
          inData = false;
          // Less the CRLF put in front at DATA.
          spool(from, to, Buffer.concat(body).subarray(2), () => reply('250 2.0.0 Ok: queued\r\n'));
          body = [];
          continue;
        }
        const eol = pending.indexOf('\r\n');
        if (eol < 0) return;
        const line = pending.subarray(0, eol).toString('latin1');
        pending = pending.subarray(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') reply('250-floor\r\n250 PIPELINING\r\n');
        else if (verb === 'MAIL') {
          from = line.slice(10);
          to = [];
          reply('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') {
          to.push(line.slice(8));
          reply('250 2.1.5 Ok\r\n');
        } else if (verb === 'DATA') {
          inData = true;
          // The terminator search wants the CRLF that ends the line before the dot, even for an empty body.
          pending = Buffer.concat([Buffer.from('\r\n'), pending]);
          body = [];
          reply('354 End data with <CR><LF>.<CR><LF>\r\n');
        } else if (verb === 'QUIT') {
          socket.end('221 2.0.0 Bye\r\n');
          return;
        } else reply('250 2.0.0 Ok\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
}

const [port, dir] = process.argv.slice(2);
if (!port || !dir) throw new Error('usage: intake-floor.ts <port> <dir>');
await serveFloor(Number(port), dir);
console.log('listening');
// The benchmark stops it when it is done with it; nothing in it needs an orderly close.
process.on('SIGTERM', () => process.exit(0));
