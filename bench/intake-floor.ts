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
 * The same responder with the forwarder's own spooling, one layer at a time
 * (the <mode> argument; `bench -- forwarder-parts`' rows under the floor):
 *   raw     the floor above: each body and a small JSON envelope put straight
 *           into LevelDB by one group-commit loop;
 *   queue   the forwarder's spool instead (common/store.ts, durable-queue.ts:
 *           the queue record, its due index and group commit) and its
 *           `accepted` log line (common/log.ts), whose write the 250 waits for,
 *           as the intake's does;
 *   stream  as queue, the body read as the intake reads it: a stream opened at
 *           DATA, read in batches by the queue while it arrives (stream-batches.ts).
 * What the forwarder's intake spends above `stream` is its SMTP layer: smtp-server's
 * parser, dispatch, handlers and replies, and smtp-intake.ts's checks around them
 * (issue #17, thirty-second round: the measure of an SMTP session of our own).
 *
 * Not a mail server: no dot-unstuffing, no limits, one process for a benchmark.
 * Run as `node --import tsx bench/intake-floor.ts <port> <dir> [raw|queue|stream]`;
 * prints "listening" on stderr when ready. Side effects: a LevelDB database in
 * <dir>; in the queue modes, the log on stdout.
 */
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { ClassicLevel } from 'classic-level';
import { DurableQueue } from '../common/durable-queue.js';
import { createLogger, linesWritten } from '../common/log.js';
// The forwarder's write buffer, so LevelDB flushes its memtable as often.
import { Store, WRITE_BUFFER_BYTES } from '../common/store.js';
import { stagedBatches } from '../common/stream-batches.js';

export const FLOOR_MODES = ['raw', 'queue', 'stream'] as const;
export type FloorMode = (typeof FLOOR_MODES)[number];

/** One message from DATA on: its body once read, answered with the queue id after the commit. */
interface Transaction {
  end(body: Buffer, ack: (id: string) => void): void;
}

/** Where the responder's messages go (see the header's modes). */
type Spool = (from: string, to: string[], client: string) => Transaction;

interface Waiting {
  key: string;
  meta: Buffer;
  body: Buffer;
  ack: (id: string) => void;
}

async function rawSpool(dir: string): Promise<Spool> {
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
      for (const w of group) w.ack(w.key);
    }
    writing = false;
  }

  return (from, to) => ({
    end(body, ack) {
      const key = String(++seq).padStart(12, '0');
      waiting.push({ key, meta: Buffer.from(JSON.stringify({ from, to, at: Date.now() })), body, ack });
      if (!writing) void commitAll();
    },
  });
}

/** The forwarder's record meta, as app/forwarder.ts makes it (SpoolMeta). */
function envelopeMeta(from: string, to: string[], client: string) {
  const envelope = { mailFrom: from, rcptTo: to, clientAddress: client, heloName: 'floor', receivedAt: Date.now(), tls: false };
  return { envelope, pending: envelope.rcptTo };
}

async function queueSpool(dir: string, streamed: boolean): Promise<Spool> {
  const log = createLogger('forwarder', 'info');
  const store = await Store.open(path.join(dir, 'forwarder'), { log });
  const spool = await DurableQueue.open<ReturnType<typeof envelopeMeta>>(store, 'spool');
  let session = 0;
  /** As smtp-intake.ts: prepare, commit, the `accepted` line, and the 250 once the line is written. */
  async function accept(body: Buffer | PassThrough, from: string, to: string[], client: string): Promise<string> {
    const p = await spool.prepare({ meta: () => envelopeMeta(from, to, client), body: Buffer.isBuffer(body) ? body : stagedBatches(body, []) });
    await spool.commitPrepared([p]);
    log.info({ event: 'accepted', queueId: p.record.id, session: `F${++session}`, client, tls: false, from, rcpt: to.length, size: p.record.body.size }, 'accepted');
    await linesWritten();
    return p.record.id;
  }
  return (from, to, client) => {
    if (!streamed) return { end: (body, ack) => void accept(body, from, to, client).then(ack) };
    // Opened at DATA and read by the queue as it arrives, as the intake's DATA stream.
    const stream = new PassThrough();
    const id = accept(stream, from, to, client);
    return {
      end(body, ack) {
        stream.end(body);
        void id.then(ack);
      },
    };
  }
}

async function serveFloor(port: number, spool: Spool): Promise<void> {
  const server = net.createServer((socket) => {
    let pending: Buffer = Buffer.alloc(0);
    let tx: Transaction | undefined;
    let body: Buffer[] = [];
    let from = '';
    let to: string[] = [];
    const reply = (text: string): void => void socket.write(text);
    const queued = (id: string): void => reply(`250 2.0.0 Ok: queued as ${id}\r\n`);
    socket.on('error', () => undefined);
    reply('220 floor ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
      for (;;) {
        if (tx) {
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
          // Less the CRLF put in front at DATA.
          tx.end(Buffer.concat(body).subarray(2), queued);
          tx = undefined;
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
          tx = spool(from, to, socket.remoteAddress ?? '');
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

const [port, dir, modeArg = 'raw'] = process.argv.slice(2);
const mode = FLOOR_MODES.find((m) => m === modeArg);
if (!port || !dir || !mode) throw new Error(`usage: intake-floor.ts <port> <dir> [${FLOOR_MODES.join('|')}]`);
await serveFloor(Number(port), mode === 'raw' ? await rawSpool(dir) : await queueSpool(dir, mode === 'stream'));
// On stderr: in the queue modes stdout is the log.
console.error('listening');
// The benchmark stops it when it is done with it; nothing in it needs an orderly close.
process.on('SIGTERM', () => process.exit(0));
