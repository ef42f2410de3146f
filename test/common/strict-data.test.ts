/* strict-data.ts: bare CR/LF and long lines, whatever the chunking. */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { StrictDataCheck } from '../../common/strict-data.js';

async function check(chunks: string[]): Promise<{ out: string; code?: string }> {
  const c = new StrictDataCheck();
  let out = '';
  for await (const b of Readable.from(chunks.map((x) => Buffer.from(x, 'latin1'))).pipe(c)) out += (b as Buffer).toString('latin1');
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
