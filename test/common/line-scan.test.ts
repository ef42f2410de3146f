/* line-scan.ts: the 16-bytes-at-a-time answer equals the per-byte definition, at every length and offset. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BARE_NEWLINE, CR, DOT, DOT_AT_LINE_START, DOUBLE_BRACE, LBRACE, LF, lineFlags } from '../../common/line-scan.js';
import { seededRandom } from '../helpers/random.js';

/** The definition, byte by byte: what lineFlags documents. */
function reference(chunk: Buffer, prev: number): number {
  let flags = 0;
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i]!;
    const before = i === 0 ? prev : chunk[i - 1]!;
    if (b === CR && i + 1 < chunk.length && chunk[i + 1] !== LF) flags |= BARE_NEWLINE;
    if (b === LF && before !== CR) flags |= BARE_NEWLINE;
    if (b === DOT && before === LF) flags |= DOT_AT_LINE_START;
    if (b === LBRACE && before === LBRACE) flags |= DOUBLE_BRACE;
  }
  return flags;
}

test('each fault is found wherever it falls in the 16-byte blocks, the byte before the chunk counts, a final CR waits', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  assert.equal(lineFlags(b('Subject: a\r\n\r\nbody\r\n'), 0), 0);
  assert.equal(lineFlags(b('ends in CR\r'), 0), 0, 'a CR that ends the chunk is left to the next one');
  assert.equal(lineFlags(b('\nx'), CR), 0, 'the LF of a CRLF split across chunks');
  assert.equal(lineFlags(b('\nx'), 0), BARE_NEWLINE);
  assert.equal(lineFlags(b('.x'), LF), DOT_AT_LINE_START, 'a dot after the LF that ended the last chunk');
  assert.equal(lineFlags(b('.x'), 0), 0, 'the start of a message is the caller’s to judge');
  assert.equal(lineFlags(b('Hi {{name}}\r\n'), 0), DOUBLE_BRACE);
  assert.equal(lineFlags(b('{ x } {x}\r\n'), 0), 0, 'single braces are not a merge tag');
  assert.equal(lineFlags(b('{name}}'), LBRACE), DOUBLE_BRACE, 'a `{{` split across chunks');
  assert.equal(lineFlags(b('{\r\n{'), 0), 0, 'braces on two lines');
  for (let at = 0; at < 40; at++) {
    const clean = Buffer.alloc(40, 'x');
    assert.equal(lineFlags(Buffer.concat([clean.subarray(0, at), b('\n'), clean.subarray(at)]), 0x78), BARE_NEWLINE, `bare LF at ${at}`);
    assert.equal(lineFlags(Buffer.concat([clean.subarray(0, at), b('\rx'), clean.subarray(at)]), 0x78), BARE_NEWLINE, `bare CR at ${at}`);
    assert.equal(lineFlags(Buffer.concat([clean.subarray(0, at), b('\r\n.'), clean.subarray(at)]), 0x78), DOT_AT_LINE_START, `dot at ${at + 2}`);
    assert.equal(lineFlags(Buffer.concat([clean.subarray(0, at), b('{{'), clean.subarray(at)]), 0x78), DOUBLE_BRACE, `{{ at ${at}`);
    assert.equal(lineFlags(Buffer.concat([clean.subarray(0, at), b('{x{'), clean.subarray(at)]), 0x78), 0, `{x{ at ${at}`);
  }
});

test('random bytes from the interesting alphabet, lengths 0 to 300,000 (the memory grows), every prev: same as byte by byte', () => {
  const rnd = seededRandom(0x11fe);
  const alphabet = [CR, LF, DOT, LBRACE, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78];
  for (let t = 0; t < 4000; t++) {
    const n = t % 500 === 0 ? Math.floor(rnd() * 300_000) : Math.floor(rnd() * 100);
    const chunk = Buffer.alloc(n);
    for (let i = 0; i < n; i++) chunk[i] = alphabet[Math.floor(rnd() * alphabet.length)]!;
    const prev = [0, CR, LF, DOT, LBRACE, 0x78][Math.floor(rnd() * 6)]!;
    assert.equal(lineFlags(chunk, prev), reference(chunk, prev), `case ${t}, ${n} bytes, prev ${prev}`);
  }
  // A large clean chunk after a large dirty one: nothing of the first is left in the module's memory.
  const dirty = Buffer.alloc(200_000, LF);
  assert.equal(lineFlags(dirty, 0), BARE_NEWLINE);
  const line = Buffer.from('x'.repeat(76) + '\r\n');
  assert.equal(lineFlags(Buffer.concat(Array.from({ length: 1000 }, () => line)), LF), 0);
});
