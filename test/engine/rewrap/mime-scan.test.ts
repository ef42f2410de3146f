import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { scanMime, walkParts } from '../../../engine/rewrap/mime-scan.js';
import { decodeText, decodeTransfer } from '../../../engine/rewrap/mime-text.js';
import { fixture } from '../../helpers/rewrap.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Feeds the bytes in small chunks so lines cross chunk borders. */
function chunked(buf: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

test('the scanner finds the same parts as mailparser, with offsets that decode to the same bytes', async () => {
  const raw = fixture('mixed-qp-pdf.eml');
  const parsed = await simpleParser(raw);
  for (const size of [raw.length, 7, 64 * 1024]) {
    const root = await scanMime(chunked(raw, size));
    const parts = walkParts(root);
    assert.deepEqual(
      parts.map((p) => p.type),
      ['multipart/mixed', 'multipart/alternative', 'text/plain', 'text/html', 'application/pdf'],
    );
    const pdf = parts[4]!;
    assert.equal(sha(decodeTransfer(raw.subarray(pdf.bodyStart, pdf.bodyEnd), pdf.encoding)), sha(parsed.attachments[0]!.content), `attachment bytes (chunk ${size})`);
    const html = parts[3]!;
    assert.equal(decodeText(html, raw.subarray(html.bodyStart, html.bodyEnd)).trim(), String(parsed.html).trim());
    const text = parts[2]!;
    assert.equal(decodeText(text, raw.subarray(text.bodyStart, text.bodyEnd)).replace(/\r\n/g, "\n"), parsed.text, "mailparser gives LF line ends");
    assert.equal(root.bodyEnd, raw.length);
  }
});

test('a single-part message is one leaf whose body runs to the end', async () => {
  const raw = Buffer.from('Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\nworld\r\n');
  const root = await scanMime(Readable.from([raw]));
  assert.equal(root.children.length, 0);
  assert.equal(raw.subarray(root.bodyStart, root.bodyEnd).toString(), 'hello\r\nworld\r\n');
});

test('a delimiter with transport padding (spaces and tabs) is still a delimiter', async () => {
  const raw = Buffer.from('Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b \t \r\n\r\none\r\n--b\t\r\n\r\ntwo\r\n--b-- \r\n');
  const parts = walkParts(await scanMime(Readable.from([raw])));
  assert.deepEqual(
    parts.slice(1).map((p) => raw.subarray(p.bodyStart, p.bodyEnd).toString()),
    ['one', 'two'],
  );
});

test('over the part limit the scan stops and says why on the root', async () => {
  const raw = Buffer.from(`Content-Type: multipart/mixed; boundary="b"\r\n\r\n${'--b\r\n\r\nx\r\n'.repeat(10)}--b--\r\n`);
  assert.equal((await scanMime(Readable.from([raw]), { nesting: 100, parts: 11 })).limit, undefined, '1 + 10 parts');
  assert.match((await scanMime(Readable.from([raw]), { nesting: 100, parts: 10 })).limit ?? '', /more than 10 MIME parts/);
});
