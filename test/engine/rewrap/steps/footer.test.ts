import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { scanMime, walkParts } from '../../../../engine/rewrap/mime-scan.js';
import { bufferSource } from '../../../../engine/rewrap/body-source.js';
import { fixture, rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const FOOTER = { enabled: true, text: '-- \nACME Ltd, 1 Main St. Unsubscribe: {{unsubscribe_url}}', html: '<p class="footer">ACME Ltd &middot; <a href="{{unsubscribe_url}}">unsubscribe</a></p>', headerText: null, headerHtml: null };

async function partsOf(b: Buffer) {
  const parts = walkParts(await scanMime(bufferSource(b).stream(0, b.length)));
  return parts.map((p) => ({ type: p.type, encoding: p.encoding, raw: b.subarray(p.headerStart, p.bodyEnd) }));
}

test('multipart/mixed (alternative + PDF, QP HTML): footer in text and HTML, QP kept, attachment bytes unchanged', async () => {
  const env = await rewrapEnv({ footer: FOOTER });
  try {
    const raw = fixture('mixed-qp-pdf.eml');
    const copy = (await runRewrap(env, raw, ['ada@example.com'])).copies[0]!;
    const before = await simpleParser(raw);
    const after = await simpleParser(copy.bytes);
    assert.match(after.text!, /your invoice is attached\.\n-- \nACME Ltd, 1 Main St\. Unsubscribe: https:\/\/mail\.example\.net\/u\/\S+\n$/);
    assert.match(String(after.html), /Gr\u00fc\u00dfe!<\/p><p class="footer">ACME Ltd &middot; <a href="https:\/\/mail\.example\.net\/u\/[^"]+">unsubscribe<\/a><\/p><\/body><\/html>/);
    assert.equal(after.attachments.length, 1);
    assert.equal(sha(after.attachments[0]!.content), sha(before.attachments[0]!.content), 'PDF content identical');

    const p0 = await partsOf(raw);
    const p1 = await partsOf(copy.bytes);
    assert.deepEqual(p1.map((p) => [p.type, p.encoding]), p0.map((p) => [p.type, p.encoding]), 'same structure, same transfer encodings');
    assert.equal(sha(p1[4]!.raw), sha(p0[4]!.raw), 'the attachment part (headers and base64 body) is byte-identical');
    for (const p of p1.slice(2, 4)) for (const line of p.raw.toString().split('\r\n')) assert.ok(line.length <= 76, `QP line ≤ 76: ${line}`);
  } finally {
    await env.close();
  }
});

test('X-Postino-Footer: off on an account that adds footers: the body is byte-identical', async () => {
  const env = await rewrapEnv({ footer: FOOTER, unsubscribe: false });
  try {
    const raw = fixture('mixed-qp-pdf.eml');
    const copy = (await runRewrap(env, Buffer.concat([Buffer.from('X-Postino-Footer: off\r\n'), raw]), ['ada@example.com'])).copies[0]!;
    assert.equal(sha(copy.bytes.subarray(copy.bytes.indexOf('\r\n\r\n'))), sha(raw.subarray(raw.indexOf('\r\n\r\n'))));
  } finally {
    await env.close();
  }
});

test('X-Postino-Footer: on switches on an account template that is off by default', async () => {
  const env = await rewrapEnv({ footer: { ...FOOTER, enabled: false } });
  try {
    const raw = Buffer.concat([Buffer.from('X-Postino-Footer: on\r\n'), fixture('mixed-qp-pdf.eml')]);
    const after = await simpleParser((await runRewrap(env, raw, ['ada@example.com'])).copies[0]!.bytes);
    assert.match(after.text!, /ACME Ltd/);
  } finally {
    await env.close();
  }
});

test('multipart/related: the base64 HTML gets header and footer and stays base64; the inline image is untouched', async () => {
  const env = await rewrapEnv({ footer: { ...FOOTER, headerHtml: '<div class="hdr">View online</div>' } });
  try {
    const raw = fixture('related.eml');
    const copy = (await runRewrap(env, raw, ['ada@example.com'])).copies[0]!;
    const after = await simpleParser(copy.bytes);
    assert.match(String(after.html), /^<html><body><div class="hdr">View online<\/div><p>Logo:<\/p><img src="[^"]*"><p class="footer">/, "mailparser inlines the cid: image as data:");
    const p0 = await partsOf(raw);
    const p1 = await partsOf(copy.bytes);
    assert.equal(p1[1]!.encoding, 'base64');
    assert.equal(sha(p1[2]!.raw), sha(p0[2]!.raw), 'the PNG part is byte-identical');
  } finally {
    await env.close();
  }
});

test('single-part text: footer appended; a 7bit part that gains 8-bit text becomes quoted-printable', async () => {
  const env = await rewrapEnv({ footer: { ...FOOTER, text: 'Grüße, ACME' } });
  try {
    const raw = 'From: shop@example.org\nTo: a@example.com\nSubject: x\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\nHello.\n';
    const copy = (await runRewrap(env, raw, ['ada@example.com'])).copies[0]!;
    assert.match(copy.headers, /^Content-Type: text\/plain; charset=utf-8\r$/m);
    assert.match(copy.headers, /^Content-Transfer-Encoding: quoted-printable\r$/m);
    assert.equal((await simpleParser(copy.bytes)).text, 'Hello.\nGrüße, ACME\n');
  } finally {
    await env.close();
  }
});

test('a forwarded message (message/rfc822) is never changed: the footer goes to the outer text only', async () => {
  const env = await rewrapEnv({ footer: FOOTER });
  try {
    const raw = [
      'From: shop@example.org', 'To: a@example.com', 'Subject: fwd', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="outer"', '',
      '--outer', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: quoted-printable', '', 'See below, Gr=FC=DFe.', '',
      '--outer', 'Content-Type: message/rfc822', '',
      'From: x@example.net', 'Subject: inner', 'Content-Type: text/plain', '', 'Inner text {{first}} stays.', '',
      '--outer--', '',
    ].join('\r\n');
    const copy = (await runRewrap(env, raw, ['ada@example.com'])).copies[0]!;
    const p0 = await partsOf(Buffer.from(raw));
    const p1 = await partsOf(copy.bytes);
    assert.equal(p1[2]!.type, 'message/rfc822');
    assert.equal(sha(p1[2]!.raw), sha(p0[2]!.raw), 'the forwarded message is byte-identical');
    const outer = p1[1]!.raw.toString('latin1');
    assert.match(outer, /charset=iso-8859-1/, 'latin-1 kept: the footer fits');
    assert.match(outer, /See below, Gr=FC=DFe\.\r\n--=20\r\nACME Ltd/, "QP keeps the trailing space of the signature separator as =20");
  } finally {
    await env.close();
  }
});
