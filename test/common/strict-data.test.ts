/* strict-data.ts: bare CR/LF and long lines, whatever the chunking. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StrictDataCheck } from '../../common/strict-data.js';
import { throughStages } from '../../common/stream-batches.js';
import { randomChunks, seededRandom } from '../helpers/random.js';

async function check(chunks: string[], allowBareNewlines = false): Promise<{ out: string; code?: string }> {
  const c = new StrictDataCheck({ allowBareNewlines });
  let out = '';
  for (const b of throughStages([c], chunks.map((x) => Buffer.from(x, 'latin1')), true)) out += b.toString('latin1');
  return { out, ...(c.violation ? { code: c.violation.code } : {}) };
}

test('CRLF text passes through unchanged, also when CR and LF arrive in different chunks', async () => {
  assert.deepEqual(await check(['Subject: a\r', '\nbody\r\n']), { out: 'Subject: a\r\nbody\r\n' });
});

test('bare LF, bare CR (also at a chunk end or the very end) are violations', async () => {
  assert.equal((await check(['a\nb\r\n'])).code, 'BARE_NEWLINE');
  assert.equal((await check(['a\rb\r\n'])).code, 'BARE_NEWLINE');
  assert.equal((await check(['a\r', 'b\r\n'])).code, 'BARE_NEWLINE');
  assert.equal((await check(['a\r\n', '\r'])).code, 'BARE_NEWLINE');
  assert.equal((await check(['a\r\n.\nMAIL FROM:<x@evil>\r\n'])).code, 'BARE_NEWLINE');
});

test('998 octets per line pass, 999 do not, counted across chunks; nothing is passed on after a violation', async () => {
  assert.equal((await check(['x'.repeat(500), 'x'.repeat(498) + '\r\n'])).code, undefined);
  const r = await check(['x'.repeat(500), 'x'.repeat(499) + '\r\n', 'after\r\n']);
  assert.equal(r.code, 'LINE_TOO_LONG');
  assert.equal(r.out, 'x'.repeat(500), 'only the chunk before the violation');
});

/** The byte-by-byte definition the indexOf walk must match: the verdict, and which chunk it falls in. */
function reference(chunks: string[], allowBare: boolean): { out: string; code?: string } {
  let lastWasCr = false;
  let len = 0;
  let out = '';
  for (const chunk of chunks) {
    for (const ch of chunk) {
      if (lastWasCr) {
        lastWasCr = false;
        len = 0;
        if (ch === '\n') continue;
        if (!allowBare) return { out, code: 'BARE_NEWLINE' };
      }
      if (ch === '\r') lastWasCr = true;
      else if (ch === '\n') {
        if (!allowBare) return { out, code: 'BARE_NEWLINE' };
        len = 0;
      } else if (++len > 998) return { out, code: 'LINE_TOO_LONG' };
    }
    out += chunk;
  }
  return lastWasCr && !allowBare ? { out, code: 'BARE_NEWLINE' } : { out };
}

test('the indexOf walks give the per-byte verdicts on random input and random chunking, in both modes', async () => {
  const rnd = seededRandom(0x5eed);
  const pieces = ['\r\n', '\r\n', '\r\n', '\r', '\n', '.', 'x', 'x'.repeat(300), 'x'.repeat(997)];
  for (let i = 0; i < 3000; i++) {
    // Mostly clean CRLF text, so both long clean runs and single faults are covered.
    const clean = rnd() < 0.5;
    let text = '';
    // Up to 40 parts and chunks up to 6,000 bytes: several 999-byte windows of the lengths-only walk per chunk.
    const parts = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 12 : 40));
    for (let k = 0; k < parts; k++) text += clean ? ['x'.repeat(Math.floor(rnd() * 1000)), '\r\n', '.'][Math.floor(rnd() * 3)] + '\r\n' : pieces[Math.floor(rnd() * pieces.length)];
    const chunks = randomChunks(text, () => 1 + Math.floor(rnd() * (rnd() < 0.3 ? 4 : rnd() < 0.5 ? 1200 : 6000)));
    for (const allowBare of [false, true]) {
      assert.deepEqual(await check(chunks, allowBare), reference(chunks, allowBare), `case ${i} allowBare=${allowBare}: ${JSON.stringify(chunks).slice(0, 300)}`);
    }
  }
});

test('doubleBrace says whether `{{` is anywhere in clean data, chunk seams included; undefined when only lengths are checked', async () => {
  const rnd = seededRandom(0xb7ace);
  const pieces = ['{', '{', '}', 'x', 'x{', '\r\n', '{\r\n', '\r\n{', 'x'.repeat(40)];
  let seen = 0;
  for (let i = 0; i < 2000; i++) {
    let text = '';
    const parts = 1 + Math.floor(rnd() * 30);
    for (let k = 0; k < parts; k++) text += pieces[Math.floor(rnd() * pieces.length)];
    text += '\r\n';
    const chunks = randomChunks(text, () => 1 + Math.floor(rnd() * (rnd() < 0.5 ? 3 : 50)));
    const c = new StrictDataCheck();
    throughStages([c], chunks.map((x) => Buffer.from(x, 'latin1')), true);
    assert.equal(c.violation, undefined);
    assert.equal(c.doubleBrace, text.includes('{{'), `case ${i}: ${JSON.stringify(chunks)}`);
    if (c.doubleBrace) seen++;
  }
  assert.ok(seen > 200 && seen < 1800, `both answers covered (${seen} of 2000 with {{)`);
  const lengthsOnly = new StrictDataCheck({ allowBareNewlines: true });
  throughStages([lengthsOnly], [Buffer.from('{{x}}\r\n')], true);
  assert.equal(lengthsOnly.doubleBrace, undefined);
});
