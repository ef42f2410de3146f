import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { LINES_PER_TURN, scanMime, walkParts } from '../../../engine/rewrap/mime-scan.js';
import { deepBoundaryFlood } from '../../helpers/hostile.js';
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

test('with the size given, the scan stops once no structure can follow, and finds exactly what a scan to the end finds', async () => {
  const samples = [
    fixture('mixed-qp-pdf.eml'),
    fixture('newsletter.eml'),
    fixture('related.eml'),
    Buffer.from('Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nworld\r\n'),
    Buffer.from('Content-Type: multipart/mixed; boundary="b"\r\n\r\npreamble\r\n--b\r\n\r\none\r\n--b--\r\nepilogue\r\n--b\r\n\r\nnot a part\r\n'),
    Buffer.from('Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nunclosed\r\n'),
    Buffer.from('Subject: only headers\r\nX: y\r\n'),
    Buffer.from(`Content-Type: multipart/mixed; boundary="b"\r\n\r\n${'--b\r\n\r\nx\r\n'.repeat(10)}--b--\r\n${'tail\r\n'.repeat(1000)}`),
  ];
  const shape = (root: Awaited<ReturnType<typeof scanMime>>): unknown => walkParts(root).map((p) => ({ ...p, children: p.children.map((c) => c.index), headers: p.headers.map((h) => h.raw.toString('latin1')) }));
  for (const raw of samples) {
    for (const size of [raw.length, 7, 1000]) {
      for (const limits of [undefined, { nesting: 100, parts: 5 }]) {
        const full = await scanMime(chunked(raw, size), limits);
        const early = await scanMime(chunked(raw, size), limits, raw.length);
        assert.deepEqual(shape(early), shape(full), `${raw.subarray(0, 40).toString()}… chunks of ${size}`);
        assert.equal(early.limit, full.limit);
      }
    }
  }
});

test('a large single-part message: only its header block is read', async () => {
  const head = 'Subject: big\r\nContent-Type: text/plain\r\n\r\n';
  const raw = Buffer.from(head + 'x'.repeat(76).concat('\r\n').repeat(50_000));
  let read = 0;
  const input = Readable.from(
    (function* () {
      for (let i = 0; i < raw.length; i += 4096) {
        read += Math.min(4096, raw.length - i);
        yield raw.subarray(i, i + 4096);
      }
    })(),
  );
  const root = await scanMime(input, undefined, raw.length);
  assert.equal(root.bodyStart, head.length);
  assert.equal(root.bodyEnd, raw.length);
  assert.ok(read <= 4096 * 2, `read ${read} of ${raw.length} bytes`);
  assert.ok(input.destroyed, 'the input stream is closed');
});

test('a body of short lines yields the event loop every LINES_PER_TURN lines, not only every 256 KiB', async () => {
  // The hostile-input test's `--` flood: 1 MB of 7-byte lines inside 90 nested multiparts.
  const raw = Buffer.from(deepBoundaryFlood(90, 1024 * 1024, 9), 'latin1');
  let lines = 0;
  for (let i = raw.indexOf(10); i !== -1; i = raw.indexOf(10, i + 1)) lines++;
  // Counts the check phases that run while the scan is under way: each of its yields lets one through.
  let turns = 0;
  let scanning = true;
  const tick = (): void => {
    turns++;
    if (scanning) setImmediate(tick);
  };
  setImmediate(tick);
  const root = await scanMime(Readable.from([raw]), undefined, raw.length);
  scanning = false;
  assert.equal(root.limit, undefined);
  assert.equal(walkParts(root).length, 92, 'the root multipart, the 90 nested in it and the innermost text part');
  // 1 MB in 256 KiB slices alone is 4 turns; its ~133,000 lines are 16 and more.
  assert.ok(turns >= Math.floor(lines / LINES_PER_TURN) - 1, `${turns} turns for ${lines} lines`);
});
