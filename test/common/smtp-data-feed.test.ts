/*
 * common/smtp-data-feed.ts replaces smtp-server's DATA scan with one that finds line-leading
 * dots by Buffer.indexOf. It must behave exactly as the library's own: these tests feed the same
 * byte streams (commands, DATA, bodies full of dots, CRs and LFs, the terminator where a hostile
 * client would put it) through a parser with each implementation, cut into chunks at every
 * position and at random, and compare every command, message byte and size flag that comes out.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { feedDataStream } from '../../common/smtp-data-feed.js';
import { seededRandom } from '../helpers/random.js';

interface Seen {
  events: string[];
}

/** Runs `input`, cut at `cuts`, through an SMTPStream; DATA switches to data mode with a 64-byte limit. */
async function parse(input: Buffer, cuts: number[], fast: boolean): Promise<Seen> {
  const s = new SMTPStream();
  if (fast) s._feedDataStream = feedDataStream;
  const events: string[] = [];
  s.oncommand = (cmd: Buffer, cb?: () => void): void => {
    const line = cmd.toString('binary');
    events.push(`cmd ${JSON.stringify(line)}`);
    if (line === 'DATA') {
      const ds = s.startDataMode(64);
      const parts: Buffer[] = [];
      ds.on('data', (b: Buffer) => parts.push(b));
      ds.on('end', () => {
        events.push(`msg ${JSON.stringify(Buffer.concat(parts).toString('binary'))} bytes=${ds.byteLength} over=${ds.sizeExceeded}`);
        s.continue();
      });
    }
    cb?.();
  };
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    const chunk = input.subarray(at, cut);
    at = cut;
    await new Promise<void>((resolve, reject) => s.write(chunk, (err) => (err ? reject(err) : resolve())));
  }
  await new Promise<void>((resolve) => s.end(resolve));
  // Data mode's escapes continue on the next turn: let them finish.
  await new Promise((r) => setTimeout(r, 5));
  return { events };
}

async function same(input: Buffer, cuts: number[]): Promise<void> {
  const lib = await parse(input, cuts, false);
  const ours = await parse(input, cuts, true);
  assert.deepEqual(ours.events, lib.events, `input ${JSON.stringify(input.toString('binary'))} cut at ${JSON.stringify(cuts)}`);
}

/** Integers in [0, n) from the suite's seeded generator, so a failure is reproducible. */
function seeded(seed: number): (n: number) => number {
  const next = seededRandom(seed);
  return (n) => Math.floor(next() * n);
}

const CASES = [
  'DATA\r\nhello\r\n.\r\nNOOP\r\n',
  'DATA\r\n.\r\nNOOP\r\n', // empty message: the terminator at the very start
  'DATA\r\n..\r\n.\r\nNOOP\r\n', // a line that is a single dot, dot-stuffed
  'DATA\r\n...\r\n..x\r\n.x\r\n.\r\nQUIT\r\n',
  'DATA\r\na\r\n..\r\n.\r\nMAIL FROM:<x@y>\r\n', // a stuffed dot line, then the terminator
  'DATA\r\na\n.\r\nb\r\n.\r\nNOOP\r\n', // bare LF before a dot: not a terminator
  'DATA\r\na\r\n.\nb\r\n.\r\n', // dot + bare LF
  'DATA\r\n\r\n.\r\n\r\n.\r\nNOOP\r\n',
  'DATA\r\nx\r\n..\r\n..\r\n..\r\n.\r\nNOOP\r\n',
  'DATA\r\n' + 'line of text\r\n'.repeat(8) + '.\r\nNOOP\r\n', // over the 64-byte limit
  'DATA\r\n\r\n..\r\n.\r\n',
  // Seams after text cut mid-line (the kept-back bytes go out with their chunk): what follows may
  // be an escape, a bare LF before a dot, or the terminator.
  'DATA\r\nabcdefgh\n..x\r\n.\r\nNOOP\r\n',
  'DATA\r\nabcdefgh\r\n..x\r\nabcdefgh\n.\r\n.\r\nNOOP\r\n',
  'DATA\r\nabcdefghij\r\n.\r\nNOOP\r\n',
];

test('the same events as smtp-server for every two-way cut of hand-made inputs', async () => {
  for (const c of CASES) {
    const input = Buffer.from(c, 'binary');
    for (let cut = 0; cut <= input.length; cut++) await same(input, [cut]);
  }
});

test('the same events as smtp-server when a chunk of up to 4 bytes follows another: every such pair of cuts', async () => {
  // A short chunk right after a seam whose kept-back bytes already went out: its first byte is still
  // in the library's next scan, and must be in ours.
  for (const c of ['DATA\r\nabcdefgh\n..x\r\nab\n.\r\n.\r\nNOOP\r\n', 'DATA\r\nabcdefgh\r\n.\r\nx\r\n.\r\n']) {
    const input = Buffer.from(c, 'binary');
    for (let a = 1; a < input.length; a++) for (let b = a + 1; b <= Math.min(a + 4, input.length); b++) await same(input, [a, b]);
  }
});

test('a text body in 16 KiB writes comes out in one data chunk per write, not a 4-byte piece ahead of each', async () => {
  const lines = Array.from({ length: 13_000 }, (_, i) => `line ${i} of a long message, cut wherever a TLS record ends`);
  const wire = Buffer.from('DATA\r\n' + lines.join('\r\n') + '\r\n.\r\nNOOP\r\n', 'binary');
  const s = new SMTPStream();
  s._feedDataStream = feedDataStream;
  const out: Buffer[] = [];
  s.oncommand = (cmd: Buffer, cb?: () => void): void => {
    if (cmd.toString() === 'DATA') {
      const ds = s.startDataMode(0);
      ds.on('data', (b: Buffer) => out.push(b));
      ds.on('end', () => s.continue());
    }
    cb?.();
  };
  let writes = 0;
  for (let at = 0; at < wire.length; at += 16_384, writes++) await new Promise<void>((r) => s.write(wire.subarray(at, at + 16_384), () => r()));
  await new Promise<void>((r) => s.end(r));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(Buffer.concat(out).toString('binary'), lines.join('\r\n') + '\r\n');
  // A write whose last bytes hold a line break (a few in 60-byte lines) still keeps them back; the
  // library's scan made two chunks of every write.
  assert.ok(out.length <= writes * 1.25, `${out.length} data chunks for ${writes} writes`);
});

test('the same events as smtp-server for random inputs of dots, CRs and LFs cut at random', async () => {
  const rand = seeded(0x2f6b_1d3c);
  const alphabet = ['.', '.', '\r', '\n', '\r\n', '\r\n.', '\r\n..', '\r\n.\r\n', 'a', 'NOOP\r\n'];
  for (let round = 0; round < 600; round++) {
    let body = 'DATA\r\n';
    const parts = 1 + rand(30);
    for (let i = 0; i < parts; i++) body += alphabet[rand(alphabet.length)];
    body += '\r\n.\r\nNOOP\r\n';
    const input = Buffer.from(body, 'binary');
    const cuts = Array.from({ length: rand(6) }, () => rand(input.length + 1)).sort((a, b) => a - b);
    await same(input, cuts);
  }
});

test('the same events as smtp-server for text bodies cut into many small chunks', async () => {
  // Mostly plain lines, where the kept-back bytes go out ahead of the next chunk without a copy,
  // with now and then a stuffed dot, a bare LF or CR, so chunks fall back to the scan mid-body.
  const rand = seeded(0x51ed_2705);
  const alphabet = ['abc', 'defgh ', '\r\n', '\r\n', 'xy\r\n', '\r\n..', '\n', '\r', '.', '\r\n.\r', 'z'];
  for (let round = 0; round < 300; round++) {
    let body = 'DATA\r\n';
    const parts = 20 + rand(80);
    for (let i = 0; i < parts; i++) body += alphabet[rand(round % 3 === 0 ? 5 : alphabet.length)];
    body += '\r\n.\r\nNOOP\r\n';
    const input = Buffer.from(body, 'binary');
    const cuts: number[] = [];
    for (let at = 1 + rand(12); at < input.length; at += 1 + rand(12)) cuts.push(at);
    await same(input, cuts);
  }
});

/** Sends `lines` (dot-stuffed here) as DATA in 1,000-byte writes through our feed: the body and data chunks that come out. */
async function sendBody(lines: string[]): Promise<{ got: string; chunks: number; writes: number; cmds: string[] }> {
  const wire = 'DATA\r\n' + lines.map((l) => (l.startsWith('.') ? '.' + l : l)).join('\r\n') + '\r\n.\r\nNOOP\r\n';
  const input = Buffer.from(wire, 'binary');
  const s = new SMTPStream();
  s._feedDataStream = feedDataStream;
  let got = '';
  let chunks = 0;
  let writes = 0;
  const cmds: string[] = [];
  s.oncommand = (cmd: Buffer, cb?: () => void): void => {
    cmds.push(cmd.toString());
    if (cmd.toString() === 'DATA') {
      const ds = s.startDataMode(0);
      ds.on('data', (b: Buffer) => {
        got += b.toString('binary');
        chunks++;
      });
      ds.on('end', () => s.continue());
    }
    cb?.();
  };
  for (let at = 0; at < input.length; at += 1000, writes++) await new Promise<void>((r) => s.write(input.subarray(at, at + 1000), () => r()));
  await new Promise<void>((r) => s.end(r));
  await new Promise((r) => setTimeout(r, 20));
  return { got, chunks, writes, cmds };
}

test('a large body arrives whole and unchanged, dots unstuffed, in 1,000-byte chunks', async () => {
  const lines: string[] = [];
  for (let i = 0; i < 3000; i++) lines.push(i % 7 === 0 ? `.${i} leading dot` : `line ${i} of a long message`);
  const { got, cmds } = await sendBody(lines);
  assert.equal(got, lines.join('\r\n') + '\r\n');
  assert.deepEqual(cmds, ['DATA', 'NOOP']);
});

test('a body of dot-stuffed lines comes out in a chunk or two per write, not one per line', async () => {
  // smtp-server's own scan emits what precedes each escape dot as a chunk and goes on next turn:
  // 1 MB of such lines made 250,000 chunks, each paid for by every stream and queue downstream.
  const lines: string[] = [];
  for (let i = 0; i < 5000; i++) lines.push('.'.repeat(1 + (i % 3)) + (i % 2 ? 'x' : ''));
  const { got, chunks, writes, cmds } = await sendBody(lines);
  assert.equal(got, lines.join('\r\n') + '\r\n');
  assert.deepEqual(cmds, ['DATA', 'NOOP']);
  assert.ok(chunks <= 2 * writes, `${chunks} chunks for ${writes} writes of 5,000 dot-stuffed lines`);
});
