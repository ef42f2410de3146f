import assert from 'node:assert/strict';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { rewrapEnv, runRewrap } from '../../../helpers/rewrap.js';

test('X-Postino-* and other relays\' control headers are removed, except engine.passthroughHeaders', async () => {
  const env = await rewrapEnv({}, { passthroughHeaders: ['X-Postino-Tag'] });
  try {
    const raw =
      'From: shop@example.org\nTo: a@example.com\nX-Postino-Tag: order-1\nX-Postino-Metadata: c=1\nX-Postino-Stream: bulk\nX-SMTPAPI: {"category":"x"}\nX-PM-Metadata-Customer: c-77\nX-Mailgun-Tag: t\nX-SES-CONFIGURATION-SET: cs\nX-Other: kept\nSubject: x\n\nhello\n';
    const h = (await runRewrap(env, raw, ['a@example.com'])).copies[0]!.headers;
    assert.match(h, /^X-Postino-Tag: order-1\r$/m);
    assert.doesNotMatch(h, /X-Postino-(Metadata|Stream)|X-SMTPAPI|X-PM-|X-Mailgun|X-SES/i);
    assert.match(h, /^X-Other: kept\r$/m);
  } finally {
    await env.close();
  }
});

test('a raw UTF-8 subject is re-encoded as RFC 2047 Q encoded-words, every line ≤ 76 characters', async () => {
  const env = await rewrapEnv();
  try {
    const subject = 'Grüße, 注文 1234 — ✓ bestätigt, und noch ein ziemlich langer Betreff mit Umlauten äöü';
    const raw = Buffer.from(`From: shop@example.org\r\nTo: a@example.com\r\nSubject: ${subject}\r\n\r\nhello\r\n`);
    const copy = (await runRewrap(env, raw, ['a@example.com'])).copies[0]!;
    const block = copy.bytes.subarray(0, copy.bytes.indexOf('\r\n\r\n') + 2);
    assert.ok(!block.some((b) => b > 0x7f), 'the header block is 7-bit');
    const lines = /^Subject:.*\r\n(?:[ \t].*\r\n)*/m.exec(block.toString('latin1'))![0].split('\r\n').filter(Boolean);
    assert.ok(lines.length > 1);
    for (const l of lines) assert.ok(l.length <= 76, `${l.length}: ${l}`);
    assert.match(lines.join(''), /=\?UTF-8\?Q\?/);
    assert.equal((await simpleParser(copy.bytes)).subject, subject);
  } finally {
    await env.close();
  }
});
