/* dot-stuffing.ts: the fast path sends exactly the bytes nodemailer's own DataStream sends. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import DataStream from 'nodemailer/lib/smtp-connection/data-stream';
import { installDotStuffingFastPath, needsNoStuffing, nodemailerTransform } from '../../common/dot-stuffing.js';
import { randomChunks, seededRandom } from '../helpers/random.js';

const proto = DataStream.prototype as unknown as { _transform: unknown };
const beforeInstall = proto._transform;
installDotStuffingFastPath();
const afterFirst = proto._transform;
installDotStuffingFastPath();

/** nodemailer's DataStream as shipped (the patched prototype is bypassed). */
class Reference extends DataStream {
  override _transform(chunk: Buffer, enc: BufferEncoding, done: () => void): void {
    nodemailerTransform.call(this, chunk, enc, done);
  }
}

async function run(stream: DataStream, chunks: Buffer[]): Promise<{ out: string; inBytes: number; outBytes: number }> {
  const out: Buffer[] = [];
  stream.on('data', (b: Buffer) => out.push(b));
  const ended = new Promise((r) => stream.on('end', r));
  for (const c of chunks) stream.write(c);
  stream.end();
  await ended;
  return { out: Buffer.concat(out).toString('latin1'), inBytes: stream.inByteCount, outBytes: stream.outByteCount };
}

test('importing dot-stuffing.ts patches nothing; installDotStuffingFastPath() does, once', () => {
  assert.equal(beforeInstall, nodemailerTransform, 'nodemailer as shipped until installed');
  assert.notEqual(afterFirst, nodemailerTransform, 'the fast path is in place');
  assert.equal(proto._transform, afterFirst, 'a second call changes nothing');
});

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

test('patched and original DataStream give identical bytes and counters on random input and chunking', async () => {
  const rnd = seededRandom(0xd07);
  const pieces = ['\r\n', '\r\n', '\r\n', '\r\n.', '\r', '\n', '.', '..', 'x', 'line of text'];
  for (let i = 0; i < 2000; i++) {
    let text = '';
    const parts = Math.floor(rnd() * 40);
    for (let k = 0; k < parts; k++) text += pieces[Math.floor(rnd() * pieces.length)];
    const chunks = randomChunks(text, () => 1 + Math.floor(rnd() * 12)).map((c) => Buffer.from(c, 'latin1'));
    const fast = await run(new DataStream(), chunks);
    const ref = await run(new Reference(), chunks);
    assert.deepEqual(fast, ref, `case ${i}: ${JSON.stringify(text)}`);
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
    const ref = new Reference();
    ref.lastByte = prev;
    const { out } = await run(ref, [chunk]);
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
  const r = await run(new DataStream(), [msg]);
  assert.equal(r.out, msg.toString('latin1') + '.\r\n');
});
