import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { bufferSource, type BodySource } from '../../../engine/rewrap/body-source.js';
import type { MimePart } from '../../../engine/rewrap/mime-scan.js';
import { decodeText, encodeText } from '../../../engine/rewrap/mime-text.js';
import { partMayContain, rawMayContain } from '../../../engine/rewrap/part-probe.js';
import { WHOLE_PART_PROBE_MAX_BYTES } from '../../../engine/rewrap/context.js';
import { seededRandom } from '../../helpers/random.js';
import { rewrapEnv, runRewrap } from '../../helpers/rewrap.js';

const part = (size: number, encoding: string, charset = 'utf-8'): MimePart => ({ index: 1, headerStart: 0, bodyStart: 0, bodyEnd: size, headers: [], type: 'text/plain', params: { charset }, encoding, disposition: '', children: [] });

/** The bytes of `buf` streamed in chunks of random sizes (1 byte up to 300), so needles and escapes straddle chunks. */
function chunked(buf: Buffer, rnd: () => number): BodySource {
  return {
    size: buf.length,
    stream: (start, end) => {
      const chunks: Buffer[] = [];
      for (let p = start; p < end; ) {
        const n = Math.min(end - p, 1 + Math.floor(rnd() * 300));
        chunks.push(buf.subarray(p, p + n));
        p += n;
      }
      return Readable.from(chunks);
    },
    read: async (start, end) => buf.subarray(start, end),
  };
}

test('the streamed probe answers as decodeText(...).includes would: 7bit, quoted-printable, base64, random chunking', async () => {
  const rnd = seededRandom(17);
  const pieces = ['a', ' ', '{', '}', '{{', 'é', '€', '=', '=7B', '\r\n', 'x'.repeat(90), '-name-', '\r\n\r\n'];
  let checked = 0;
  let found = 0;
  for (let i = 0; i < 150; i++) {
    let text = '';
    const len = 20 + Math.floor(rnd() * 2000);
    // Half the texts without `{{` at all, so both answers are exercised.
    const noTags = i % 2 === 0;
    while (text.length < len) {
      const p = pieces[Math.floor(rnd() * pieces.length)]!;
      if (noTags && p === '{{') continue;
      text += p;
    }
    if (noTags) text = text.replace(/\{(?=\{)/g, '{ ');
    for (const encoding of ['7bit', 'quoted-printable', 'base64']) {
      const raw = encoding === '7bit' ? Buffer.from(text.replace(/\r?\n/g, '\r\n'), 'utf8') : (await encodeText(part(0, encoding), text)).body;
      const p = part(raw.length, encoding);
      for (const needles of [['{{'], ['{{', '-name-'], ['}}']]) {
        const expected = needles.some((n) => decodeText(p, raw).includes(n));
        assert.equal(await partMayContain(chunked(raw, rnd), p, needles), expected, `${encoding} ${JSON.stringify(needles)} text ${JSON.stringify(text.slice(0, 80))}`);
        checked++;
        if (expected) found++;
      }
    }
  }
  assert.ok(found > 100 && checked - found > 100, `both answers exercised (${found} of ${checked} found)`);
});

test('quoted-printable escapes and soft line breaks count: =7B=7B and {=\\r\\n{ are a `{{`', async () => {
  for (const raw of ['abc =7B=7Bname}} def', 'abc {=\r\n{name}}', 'abc =7b{x}}']) {
    const b = Buffer.from(raw);
    assert.equal(await partMayContain(bufferSource(b), part(b.length, 'quoted-printable'), ['{{']), true, raw);
  }
  const none = Buffer.from('a {=\r\n b =7B c {} d');
  assert.equal(await partMayContain(bufferSource(none), part(none.length, 'quoted-printable'), ['{{']), false);
});

test('where bytes do not map one to one onto ASCII (UTF-16, Shift_JIS), a non-ASCII needle, or base64 data after padding: "may" (the part is read)', async () => {
  const b = Buffer.from('plain text without tags');
  assert.equal(await partMayContain(bufferSource(b), part(b.length, '7bit', 'utf-16le'), ['{{']), true);
  assert.equal(await partMayContain(bufferSource(b), part(b.length, '7bit', 'shift_jis'), ['{{']), true);
  assert.equal(await partMayContain(bufferSource(b), part(b.length, '7bit'), ['€']), true);
  assert.equal(await partMayContain(bufferSource(b), part(b.length, '7bit', 'iso-8859-15'), ['{{']), false);
  assert.equal(await partMayContain(bufferSource(b), part(b.length, '7bit', 'x-unknown-charset'), ['{{']), false, 'decodeText reads an unknown charset as UTF-8');
  const padded = Buffer.from('QQ==\r\nQUJD\r\n');
  assert.equal(await partMayContain(bufferSource(padded), part(padded.length, 'base64'), ['{{']), true);
});

test('a small part without a transfer encoding is searched as bytes: the answer decodeText(...).includes gives, invalid UTF-8 included', async () => {
  const rnd = seededRandom(29);
  // Bytes that make invalid or truncated UTF-8 next to the needles' characters, and valid multi-byte ones.
  const pieces = ['a', '{', '{{', '}}', '-name-', '\r\n', 'é', '€'].map((x) => Buffer.from(x)).concat([Buffer.from([0xc3]), Buffer.from([0xe2, 0x82]), Buffer.from([0xff]), Buffer.from([0x80])]);
  let found = 0;
  let checked = 0;
  for (let i = 0; i < 300; i++) {
    const parts: Buffer[] = [];
    for (let n = 2 + Math.floor(rnd() * 10); n > 0; n--) parts.push(pieces[Math.floor(rnd() * pieces.length)]!);
    const raw = Buffer.concat(parts);
    for (const encoding of ['7bit', '8bit', 'binary', '']) {
      for (const charset of ['utf-8', 'us-ascii', 'iso-8859-1']) {
        const p = part(raw.length, encoding, charset);
        for (const needles of [['{{'], ['}}', '-name-'], ['{{', '']]) {
          const expected = needles.some((n) => n !== '' && decodeText(p, raw).includes(n));
          assert.equal(rawMayContain(raw, p, needles), expected, `${encoding} ${charset} ${JSON.stringify(needles)} ${raw.toString('hex')}`);
          checked++;
          if (expected) found++;
        }
      }
    }
  }
  assert.ok(found > 500 && checked - found > 500, `both answers exercised (${found} of ${checked} found)`);
  const b = Buffer.from('plain {{x}}');
  assert.equal(rawMayContain(b, part(b.length, 'quoted-printable'), ['{{']), undefined, 'a transfer encoding: only the decoded text tells');
  assert.equal(rawMayContain(b, part(b.length, 'base64'), ['{{']), undefined);
  assert.equal(rawMayContain(b, part(b.length, '7bit', 'utf-16le'), ['{{']), undefined);
  assert.equal(rawMayContain(b, part(b.length, '7bit'), ['€']), undefined);
  assert.equal(rawMayContain(b, part(b.length, '7bit'), ['']), false, 'nothing to look for');
  assert.equal(rawMayContain(b, part(b.length, '7bit', 'utf-16le'), []), false, 'nothing to look for, whatever the charset');
  assert.equal(await partMayContain(bufferSource(b), part(b.length, '7bit', 'utf-16le'), ['']), false);
});

/** A source that records the ranges read whole (`read`), over the real buffer source. */
function watched(buf: Buffer): { source: BodySource; wholeReads: Array<[number, number]> } {
  const inner = bufferSource(buf);
  const wholeReads: Array<[number, number]> = [];
  return { wholeReads, source: { size: inner.size, stream: inner.stream, read: (s, e) => (wholeReads.push([s, e]), inner.read(s, e)) } };
}

test('rewrap: a large text body without merge tags is never read whole and comes out byte for byte; one with a tag deep inside is merged', async () => {
  const line = 'The quick brown fox jumps over the lazy dog, again and again and again.\r\n';
  const filler = line.repeat(Math.ceil((WHOLE_PART_PROBE_MAX_BYTES * 2) / line.length));
  const head = 'From: shop@example.org\r\nTo: ada@example.com\r\nSubject: big\r\nX-Postino-Vars: {"first":"Ada"}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n';
  const env = await rewrapEnv();
  try {
    const plain = Buffer.from(head + filler);
    const w = watched(plain);
    const r = await runRewrap(env, plain, ['ada@example.com'], undefined, undefined, w.source);
    assert.equal(r.copies.length, 1);
    const body = r.copies[0]!.bytes;
    assert.ok(body.subarray(body.indexOf('\r\n\r\n') + 4).equals(Buffer.from(filler)), 'body unchanged');
    assert.deepEqual(w.wholeReads.filter(([s, e]) => e - s > WHOLE_PART_PROBE_MAX_BYTES), [], 'the part was streamed, not read whole');

    const tagged = Buffer.from(head + filler + 'Dear {{first}},\r\n' + filler);
    const t = await runRewrap(env, tagged, ['ada@example.com']);
    const parsed = await simpleParser(t.copies[0]!.bytes);
    assert.ok(parsed.text?.includes('Dear Ada,'), 'merged');
    assert.ok(!parsed.text?.includes('{{first}}'));
  } finally {
    await env.close();
  }
});

test('rewrap: a small part is read once for the merge-tag question, whether bytes or only its decoded text can answer it', async () => {
  const env = await rewrapEnv();
  try {
    const head = (encoding: string): string => `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: small\r\nX-Postino-Vars: {"first":"Ada"}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: ${encoding}\r\n\r\n`;
    // quoted-printable: `=7B=7B` is `{{` once decoded, so only the text can answer; 7bit: the bytes answer.
    for (const [encoding, body, merged] of [
      ['quoted-printable', 'Dear =7B=7Bfirst}},\r\nsee you.\r\n', true],
      ['7bit', 'Dear friend,\r\nsee you.\r\n', false],
    ] as const) {
      const raw = Buffer.from(head(encoding) + body);
      const w = watched(raw);
      const r = await runRewrap(env, raw, ['ada@example.com'], undefined, undefined, w.source);
      const start = raw.indexOf('\r\n\r\n') + 4;
      const partReads = w.wholeReads.filter(([s, e]) => s === start && e === raw.length);
      assert.equal(partReads.length, 1, `${encoding}: the part read whole once (${JSON.stringify(w.wholeReads)})`);
      const text = (await simpleParser(r.copies[0]!.bytes)).text ?? '';
      assert.equal(text.includes('Dear Ada,'), merged, `${encoding}: ${text}`);
      assert.ok(!text.includes('{{first}}'));
    }
  } finally {
    await env.close();
  }
});

/** A source that records every range asked of it, streamed or read whole. */
function recorded(buf: Buffer): { source: BodySource; ranges: Array<[number, number]> } {
  const inner = bufferSource(buf);
  const ranges: Array<[number, number]> = [];
  return {
    ranges,
    source: { size: inner.size, stream: (s, e) => (ranges.push([s, e]), inner.stream(s, e)), read: (s, e) => (ranges.push([s, e]), inner.read(s, e)) },
  };
}

test('rewrap, when the listener saw no `{{`: parts whose raw bytes are their text are not read for merge tags; quoted-printable ones and substitution keys still are', async () => {
  const line = 'The quick brown fox jumps over the lazy dog, again and again and again.\r\n';
  const big = line.repeat(Math.ceil((WHOLE_PART_PROBE_MAX_BYTES * 2) / line.length));
  const raw = (third: string, smtpapi = ''): Buffer =>
    Buffer.from(
      `From: shop@example.org\r\nTo: ada@example.com\r\nSubject: parts\r\nX-Postino-Vars: {"first":"Ada"}\r\n${smtpapi}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n` +
        `--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${big}\r\n` +
        `--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nsmall part, no tag\r\n` +
        `--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${third}\r\n--b--\r\n`,
    );
  const env = await rewrapEnv();
  try {
    const plain = raw('third, no tag');
    const mime = (await runRewrap(env, plain, ['ada@example.com'])).msg.bodyParts;
    const partRanges = (buf: Buffer, rs: Array<[number, number]>): Array<[number, number]> => rs.filter(([s, e]) => mime.some((p) => p.bodyStart === s && p.bodyEnd === e && p.bodyEnd <= buf.length));
    // Without the listener's word every part is looked at: the large one streamed, the small ones read.
    const before = recorded(plain);
    const r0 = await runRewrap(env, plain, ['ada@example.com'], undefined, undefined, before.source);
    assert.equal(partRanges(plain, before.ranges).length, 3, JSON.stringify(before.ranges));
    // With it, only the quoted-printable part is (`=7B=7B` would be a `{{` once decoded), and the copy is the same.
    const after = recorded(plain);
    const r1 = await runRewrap(env, plain, ['ada@example.com'], undefined, undefined, after.source, { noDoubleBrace: true });
    const qp = mime[2]!;
    assert.deepEqual(partRanges(plain, after.ranges), [[qp.bodyStart, qp.bodyEnd]]);
    const body = (b: Buffer): Buffer => b.subarray(b.indexOf('\r\n\r\n'));
    assert.ok(body(r1.copies[0]!.bytes).equals(body(r0.copies[0]!.bytes)), 'the same copy body');

    const encoded = raw('Dear =7B=7Bfirst}}, and -who-.');
    const merged = await runRewrap(env, encoded, ['ada@example.com'], undefined, undefined, undefined, { noDoubleBrace: true });
    assert.ok((await simpleParser(merged.copies[0]!.bytes)).text?.includes('Dear Ada,'), 'a quoted-printable tag is merged');

    // A SendGrid substitution key is not a `{{`: it is still looked for in every part.
    const subs = raw('third', 'X-SMTPAPI: {"sub":{"-who-":["Ada"]}}\r\n');
    const withKey = Buffer.concat([subs.subarray(0, subs.indexOf('small part')), Buffer.from('small part for -who-'), subs.subarray(subs.indexOf('small part') + 'small part, no tag'.length)]);
    const s = await runRewrap(env, withKey, ['ada@example.com'], undefined, undefined, undefined, { noDoubleBrace: true });
    assert.ok((await simpleParser(s.copies[0]!.bytes)).text?.includes('small part for Ada'), 'the substitution key is replaced');
  } finally {
    await env.close();
  }
});
