import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import RelaxedBody from 'nodemailer/lib/dkim/relaxed-body';
import { RelaxedBodyHash } from '../../../engine/rewrap/dkim-body-hash.js';

/** nodemailer's byte-by-byte implementation: the reference. */
async function reference(body: Buffer): Promise<string> {
  const r = new RelaxedBody({ hashAlgo: 'sha256' });
  const hash = new Promise<string>((resolve) => r.on('hash', resolve));
  r.resume();
  r.end(body);
  return hash;
}

function ours(body: Buffer, chunk: number): string {
  const h = new RelaxedBodyHash();
  for (let i = 0; i < body.length; i += chunk) h.update(body.subarray(i, i + chunk));
  return h.digest();
}

const CASES: Record<string, string> = {
  empty: '',
  'one line': 'hello\r\n',
  'no final break': 'hello',
  'trailing empty lines': 'a\r\n\r\n\r\n',
  'empty lines inside': 'a\r\n\r\n\r\nb\r\n',
  'white space runs': 'a  \t b\t\r\n  \r\n c \r\n',
  'only white space lines at the end': 'a\r\n \t \r\n\t\r\n',
  'bare LF': 'a\nb \n\n',
  'CR in a line': 'a\rb\r\n',
  'leading empty lines': '\r\n\r\nx\r\n',
  'trailing space without break': 'x  ',
  'CR at the very end': 'x\r',
};

test('the relaxed body hash equals nodemailer\'s byte-by-byte one, for every chunking', async () => {
  for (const [name, text] of Object.entries(CASES)) {
    const body = Buffer.from(text, 'latin1');
    const want = await reference(body);
    for (const chunk of [1, 2, 3, 7, 64, Math.max(1, body.length)]) assert.equal(ours(body, chunk), want, `${name}, chunks of ${chunk}`);
  }
});

test('random bodies of lines, white space, empty lines and base64 agree with the reference', async () => {
  const alphabet = ['a', 'b', ' ', '\t', '\r\n', '\r\n', '\n', 'Zm9vYmFy', '=', '\r'];
  for (let n = 0; n < 200; n++) {
    const rnd = randomBytes(400);
    let text = '';
    for (const b of rnd) text += alphabet[b % alphabet.length];
    const body = Buffer.from(text, 'latin1');
    const want = await reference(body);
    for (const chunk of [1, 5, 33, 4096]) assert.equal(ours(body, chunk), want, `case ${n}, chunks of ${chunk}: ${JSON.stringify(text)}`);
  }
});
