/*
 * The forwarder's SMTP intake as an app sees it: only allowed networks (554 at
 * connect otherwise), SIZE advertised and enforced, a recipient cap, and
 * optional AUTH PLAIN/LOGIN.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { forwarderConfig, startForwarderProcess } from '../helpers/forwarder.js';
import { tempDir, type Running } from '../helpers/postino.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

let fwd: Running;
let port: number;
const MAX_SIZE = 100_000;

before(async () => {
  process.env.POSTINO_TEST_APP_PASSWORD = 's3cret!';
  const { config, ports } = await forwarderConfig(['smtp://127.0.0.1:1'], {
    forwarder: {
      smtp: {
        allowNetworks: ['127.0.0.1/32'],
        maxSize: MAX_SIZE,
        maxRecipients: 2,
        auth: { users: [{ username: 'shop', passwordEnv: 'POSTINO_TEST_APP_PASSWORD' }], required: true },
      },
    },
  });
  port = ports.smtp;
  fwd = await startForwarderProcess(tempDir('intake'), config);
});

after(async () => {
  await fwd.stop();
});

test('a client from 127.0.0.2 while only 127.0.0.1 is allowed gets 554 at connect', async () => {
  const c = await RawSmtp.connect(port, '127.0.0.1', '127.0.0.2');
  assert.match(await c.reply(), /^554 5\.7\.1 Access denied for 127\.0\.0\.2/);
  c.close();
});

test('EHLO advertises SIZE and AUTH PLAIN LOGIN; a wrong password gets 535, the right one 235', async () => {
  const c = await RawSmtp.connect(port);
  assert.match(await c.reply(), /^220 /);
  const ehlo = await c.cmd('EHLO app.test');
  assert.match(ehlo, new RegExp(`^250[ -]SIZE ${MAX_SIZE}\\r?$`, 'm'));
  assert.match(ehlo, /^250[ -]AUTH PLAIN LOGIN\r?$/m);
  assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^530 5\.7\.0 Authentication required/, 'auth.required: no MAIL before AUTH');
  assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0shop\0wrong').toString('base64')}`), /^535 /);
  assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0shop\0s3cret!').toString('base64')}`), /^235 /);
  assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250 /);
  c.close();
});

test('AUTH LOGIN works too; SIZE over the limit gets 552; a third recipient gets 452', async () => {
  const c = await RawSmtp.connect(port);
  await c.reply();
  await c.cmd('EHLO app.test');
  assert.match(await c.cmd('AUTH LOGIN'), /^334 /);
  assert.match(await c.cmd(Buffer.from('shop').toString('base64')), /^334 /);
  assert.match(await c.cmd(Buffer.from('s3cret!').toString('base64')), /^235 /);
  assert.match(await c.cmd(`MAIL FROM:<shop@example.org> SIZE=${MAX_SIZE + 1}`), /^552 /);
  assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250 /);
  assert.match(await c.cmd('RCPT TO:<a@example.com>'), /^250 /);
  assert.match(await c.cmd('RCPT TO:<b@example.com>'), /^250 /);
  assert.match(await c.cmd('RCPT TO:<c@example.com>'), /^452 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  c.write(`Subject: big\r\n\r\n${'x'.repeat(MAX_SIZE + 10)}\r\n.\r\n`);
  assert.match(await c.reply(), /^552 /, 'a body over the limit is refused after DATA too');
  c.close();
});

test('a line over 998 octets gets 550 5.6.0 at once (the listener would refuse it); bare LF is accepted', async () => {
  const c = await RawSmtp.connect(port);
  await c.reply();
  await c.cmd('EHLO app.test');
  assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0shop\0s3cret!').toString('base64')}`), /^235 /);
  const send = async (data: string): Promise<string> => {
    assert.match(await c.cmd('MAIL FROM:<shop@example.org>'), /^250/);
    assert.match(await c.cmd('RCPT TO:<ada@example.com>'), /^250/);
    assert.match(await c.cmd('DATA'), /^354/);
    c.write(data + '\r\n.\r\n');
    return c.reply();
  };
  assert.match(await send(`Subject: long\r\n\r\n${'x'.repeat(999)}`), /^550 5\.6\.0 Message line longer than 998 octets/);
  assert.match(await send(`Subject: ok\r\n\r\n${'x'.repeat(998)}`), /^250 /, '998 octets is the limit, not over it');
  assert.match(await send('Subject: php mail()\nTo: ada@example.com\n\nbare LF lines\nfrom an app'), /^250 /, 'bare LF from an app is taken');
  c.close();
});
