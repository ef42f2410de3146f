/* dot-stuffing.ts sends exactly the bytes nodemailer's DataStream sends (the reference), chunk by chunk. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { endOfData, needsNoStuffing, stuffChunk, stuffChunkAt } from '../../common/dot-stuffing.js';
import { StrictDataCheck } from '../../common/strict-data.js';
import { nodemailerWire as reference } from '../helpers/data-stream.js';
import { randomChunks, seededRandom } from '../helpers/random.js';

/** The same through dot-stuffing.ts, as smtp-session.ts writes a body. */
function ours(chunks: Buffer[], prev: number | false = false): string {
  const out: Buffer[] = [];
  let last = prev;
  for (const c of chunks) {
    if (!c.length) continue;
    out.push(stuffChunk(c, last));
    last = c[c.length - 1]!;
  }
  out.push(endOfData(last));
  return Buffer.concat(out).toString('latin1');
}

test('clean CRLF text passes the fast check; each kind of needed change is caught, also across chunk ends', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  assert.equal(needsNoStuffing(b('a\r\nb\r\n'), false), true);
  assert.equal(needsNoStuffing(b('a\r\nb\r'), false), true, 'a CR at the end waits for the next chunk');
  assert.equal(needsNoStuffing(b('\nc\r\n'), 0x0d), true);
  assert.equal(needsNoStuffing(b('.a\r\n'), false), false, 'dot at the start of the message');
  assert.equal(needsNoStuffing(b('.a\r\n'), 0x0a), false, 'dot after the previous chunk ended a line');
  assert.equal(needsNoStuffing(b('a\r\n.b\r\n'), false), false);
  assert.equal(needsNoStuffing(b('a\nb\r\n'), false), false, 'bare LF');
  assert.equal(needsNoStuffing(b('a\rb\r\n'), false), false, 'bare CR');
  assert.equal(needsNoStuffing(b('b\r\n'), 0x0d), false, 'bare CR across chunks');
  assert.equal(needsNoStuffing(b('\n.x'), 0x0d), false, 'dot after a CRLF split across chunks');
});

test('identical bytes to nodemailer on random input and random chunking', async () => {
  const rnd = seededRandom(0xd07);
  const pieces = ['\r\n', '\r\n', '\r\n', '\r\n.', '\r', '\n', '.', '..', 'x', 'line of text'];
  for (let i = 0; i < 2000; i++) {
    let text = '';
    const parts = Math.floor(rnd() * 40);
    for (let k = 0; k < parts; k++) text += pieces[Math.floor(rnd() * pieces.length)];
    const chunks = randomChunks(text, () => 1 + Math.floor(rnd() * 12)).map((c) => Buffer.from(c, 'latin1'));
    assert.equal(ours(chunks), await reference(chunks), `case ${i}: ${JSON.stringify(text)}`);
  }
});

test('the fast check says "nothing to insert" exactly when nodemailer inserts nothing, on random chunks of up to 2,000 bytes', async () => {
  const rnd = seededRandom(0x5ca9);
  const pieces = ['\r\n', '\r\n', '\r\n', '\r\n', 'x'.repeat(70), 'line', '\r\n.', '\r', '\n', '.'];
  let clean = 0;
  for (let i = 0; i < 3000; i++) {
    // Mostly CRLF text, a fault now and then, so both answers are common.
    let text = '';
    const parts = 1 + Math.floor(rnd() * 60);
    for (let k = 0; k < parts; k++) text += pieces[Math.floor(rnd() * (rnd() < 0.97 ? 5 : pieces.length))];
    const chunk = Buffer.from(text, 'latin1');
    const prev = [false, 0x0a, 0x0d, 0x78][Math.floor(rnd() * 4)] as number | false;
    const out = await reference([chunk], prev);
    // What nodemailer sent for this chunk, without the terminator its end() adds.
    const unchanged = out.slice(0, chunk.length) === text && out.length - chunk.length <= 5;
    const insertsNothing = unchanged && out.slice(chunk.length).replace(/^\r?\n?\.\r\n$/, '') === '';
    assert.equal(needsNoStuffing(chunk, prev), insertsNothing, `case ${i} prev=${String(prev)}: ${JSON.stringify(text)}`);
    if (insertsNothing) clean++;
  }
  assert.ok(clean > 1000 && clean < 2900, `${clean} of 3000 clean: both answers covered`);
});

test('a 100 KB CRLF message goes through unchanged apart from the terminator', async () => {
  const body = Buffer.from('x'.repeat(76) + '\r\n').subarray(0, 78);
  const msg = Buffer.concat(Array.from({ length: 1300 }, () => body));
  assert.equal(stuffChunk(msg, false), msg, 'the same Buffer, not a copy');
  assert.equal(ours([msg]), msg.toString('latin1') + '.\r\n');
});

/** What the listener's check says of `text`: clean when it refuses nothing and finds no dot-led line. */
function listenerClean(text: Buffer): boolean {
  const c = new StrictDataCheck();
  c.push(text);
  c.end();
  return c.violation === undefined && c.dotLine === false;
}

test('stuffChunkAt: a head of any bytes, then a tail the listener found clean: the bytes stuffChunk sends, however cut', () => {
  const rnd = seededRandom(0xc1ea);
  const headPieces = ['\r\n', '\r', '\n', '.', '..', 'x', 'Subject: y\r\n'];
  const tailPieces = ['\r\n', '\r\n', 'x', 'line of text', '.', 'a.b', '\r\n\r\n', '.x'];
  let tails = 0;
  for (let i = 0; i < 4000; i++) {
    let head = '';
    for (let k = Math.floor(rnd() * 8); k > 0; k--) head += headPieces[Math.floor(rnd() * headPieces.length)];
    let tail = '';
    for (let k = 1 + Math.floor(rnd() * 30); k > 0; k--) tail += tailPieces[Math.floor(rnd() * tailPieces.length)];
    const tailBytes = Buffer.from(tail, 'latin1');
    // Only a tail the listener's check calls clean may be sent with cleanFrom (IntakeMeta.cleanLines).
    if (!listenerClean(tailBytes)) continue;
    tails++;
    const body = Buffer.concat([Buffer.from(head, 'latin1'), tailBytes]);
    const cleanFrom = head.length;
    // Cut anywhere, or at the seam as delivery's pieces are (header, then the intake's bytes).
    const cuts = rnd() < 0.5 ? randomChunks(body.toString('latin1'), () => 1 + Math.floor(rnd() * 16)).map((c) => Buffer.from(c, 'latin1')) : [body.subarray(0, cleanFrom), body.subarray(cleanFrom)];
    const out: Buffer[] = [];
    let last: number | false = false;
    let offset = 0;
    for (const c of cuts) {
      if (!c.length) continue;
      out.push(stuffChunkAt(c, last, offset, cleanFrom));
      last = c[c.length - 1]!;
      offset += c.length;
    }
    out.push(endOfData(last));
    assert.equal(Buffer.concat(out).toString('latin1'), ours(cuts), `case ${i}: head ${JSON.stringify(head)} tail ${JSON.stringify(tail)}`);
  }
  assert.ok(tails > 500, `${tails} clean tails tried`);
  // The seam itself is judged: a tail that starts with a dot behind a head that ends a line is stuffed.
  const head = Buffer.from('To: a\r\n\r\n');
  assert.equal(stuffChunkAt(Buffer.from('.x\r\n'), 0x0a, head.length, head.length).toString(), '..x\r\n');
  assert.equal(stuffChunkAt(Buffer.from('x\r\n'), 0x0d, head.length, head.length).toString(), '\nx\r\n', 'a head ending in a bare CR');
  // Past the seam nothing is looked at: the caller's word is taken (which is why only the listener's check gives it).
  assert.equal(stuffChunkAt(Buffer.from('\n.x'), 0x78, head.length + 5, head.length).toString(), '\n.x');
});
