/*
 * The rewrap through `postino up`: a scheduled message with footer, tracking,
 * VERP and DKIM on, sent with a raw SMTP client to the forwarder, waits for its
 * send time across a restart, and arrives in the sink signed and rewrapped;
 * an unparseable X-Postino-Send-At is refused by the listener with 550.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { simpleParser } from 'mailparser';
import { generateDkimKey } from '../../engine/rewrap/dkim-keys.js';
import { verifyDkim } from '../helpers/dkim-verify.js';
import { startUp, tempDir, upConfig } from '../helpers/postino.js';
import { readSink, waitForSink } from '../helpers/sink-reader.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

async function send(port: number, rcpts: string[], message: string): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    assert.match(await c.reply(), /^220 /);
    assert.match(await c.cmd('EHLO app.test'), /^250/);
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250/);
    for (const r of rcpts) assert.match(await c.cmd(`RCPT TO:<${r}>`), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write(message.replace(/\r?\n/g, '\r\n') + '\r\n.\r\n');
    const reply = await c.reply();
    await c.cmd('QUIT').catch(() => undefined);
    return reply;
  } finally {
    c.close();
  }
}

test('X-Postino-Send-At 5 s ahead: not delivered before, delivered after a restart in between, rewrapped and DKIM-signed', { timeout: 90_000 }, async () => {
  const dataDir = tempDir('rewrap');
  const key = generateDkimKey(path.join(dataDir, 'keys'), 'example.org', 'e2e');
  const { config, ports } = await upConfig(() => ({
    engine: { bounceDomain: 'bounce.example.net', publicUrl: 'https://mail.example.net' },
    accounts: [{ id: 'default', engine: { dkim: { selector: 'e2e', keyFile: key.keyFile }, track: { opens: true, clicks: true }, footer: { enabled: true, text: 'ACME Ltd', html: '<p>ACME Ltd</p>' } } }],
  }));
  let up = await startUp(dataDir, config);
  const sendAt = Date.now() + 5_000;
  const msg = `From: Shop <shop@example.org>
To: ada@example.com
Subject: Hello {{first|friend}}
Message-ID: <sched-1@example.org>
X-Postino-Send-At: ${new Date(sendAt).toISOString()}
X-Postino-Vars: {"first":"Ada"}
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p>Hi {{first}}, see <a href="https://shop.example.com/x">this</a>.</p></body></html>`;
  try {
    assert.match(await send(ports.forwarder, ['ada@example.com', 'bcc@example.com'], msg), /^250 /);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(readSink(path.join(dataDir, 'sink')).length, 0, 'nothing delivered before the send time');
    assert.equal(await up.stop(), 0);
    up = await startUp(dataDir, config);
    const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 2, 30_000);
    assert.equal(sink.length, 2);
    for (const m of sink) {
      assert.ok(Date.parse(m.receivedAt) >= sendAt, `delivered at ${m.receivedAt}, not before ${new Date(sendAt).toISOString()}`);
      assert.match(m.mailFrom, /^bounces\+[0-9a-z]+-[0-9a-z]+-[a-z2-7]+@bounce\.example\.net$/);
      const eml = fs.readFileSync(path.join(dataDir, 'sink', `${m.id}.eml`));
      const results = await verifyDkim(eml, 'example.org', 'e2e', key.privateKey);
      assert.equal(results[0]?.status.result, 'pass', 'DKIM verifies after every rewrite');
      const p = await simpleParser(eml);
      assert.equal(p.subject, 'Hello Ada');
      assert.match(String(p.html), /Hi Ada, see <a href="https:\/\/mail\.example\.net\/t\/c\/[^"]+">this<\/a>/);
      assert.match(String(p.html), /<p>ACME Ltd<\/p><img src="https:\/\/mail\.example\.net\/t\/o\//);
      assert.doesNotMatch(m.headers, /X-Postino-/i);
      assert.equal(p.to && !Array.isArray(p.to) ? p.to.value[0]!.address : '', m.rcptTo[0], 'each copy is addressed To: its own recipient (the Bcc one too)');
    }
  } finally {
    await up.stop();
  }
});

test('an unparseable X-Postino-Send-At is refused at the listener with 550 at the end of DATA', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('sendat');
  // Plain SMTP straight to the listener: this account takes mail without STARTTLS.
  const { config, ports } = await upConfig(() => ({ listener: { maxSize: 50_000 }, accounts: [{ id: 'default', networks: ['127.0.0.1/32', '::1/128'], listener: { requireTls: false } }] }));
  const up = await startUp(dataDir, config);
  try {
    const reply = await send(ports.listener, ['ada@example.com'], 'From: shop@example.org\nTo: ada@example.com\nSubject: x\nX-Postino-Send-At: next tuesday-ish\n\nhello');
    assert.match(reply, /^550 5\.6\.0 X-Postino-Send-At: cannot parse "next tuesday-ish"/);
    const ok = await send(ports.listener, ['ada@example.com'], 'From: shop@example.org\nTo: ada@example.com\nSubject: x\nX-Postino-Send-At: Tue, 24 Nov 2026 10:00:00 +0000\n\nhello');
    assert.match(ok, /^250 /, 'a past date is fine (sent now)');
    const big = await send(ports.listener, ['ada@example.com'], `From: shop@example.org\nSubject: x\nX-Postino-Send-At: soon\n\n${'x'.repeat(100_000)}`);
    assert.match(big, /^552 /, 'the size limit still applies with the header check in place');
    const sink = await waitForSink(path.join(dataDir, 'sink'), (m) => m.length >= 1, 20_000);
    assert.equal(sink.length, 1);
  } finally {
    await up.stop();
  }
});
