/*
 * ESMTP extensions on the shared intake (common/smtp-intake.ts + smtp-server.ts),
 * over raw SMTP against the listener: what EHLO offers, 555 5.5.4 for a MAIL or
 * RCPT parameter of an extension not offered, 501 for a DSN parameter (RFC 3461)
 * that breaks its syntax, the DSN parameters kept in the intake record, 553 5.6.7
 * for a UTF-8 address without SMTPUTF8. The forwarder's side: test/forwarder/smtp-tls.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RawSmtp } from '../helpers/smtp-raw.js';
import { startTestListener, type TestListener } from '../helpers/listener.js';
import { open } from '../helpers/smtp-session.js';

describe('ESMTP parameters on the listener', () => {
  let l: TestListener;
  let c: RawSmtp;
  before(async () => (l = await startTestListener({ accounts: [{ id: 'acme', networks: ['127.0.0.1/32'], listener: { requireTls: false } }] })));
  after(async () => l.close());

  test('EHLO offers SMTPUTF8, 8BITMIME, SIZE, STARTTLS and DSN, not REQUIRETLS', async () => {
    const raw = await RawSmtp.connect(l.port);
    try {
      await raw.reply();
      const ehlo = await raw.cmd('EHLO client.test');
      for (const ext of ['SMTPUTF8', '8BITMIME', 'SIZE', 'STARTTLS', 'DSN']) assert.match(ehlo, new RegExp(`^250[ -]${ext}`, 'm'));
      assert.doesNotMatch(ehlo, /REQUIRETLS/);
    } finally {
      raw.close();
    }
  });

  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown MAIL parameter', ['MAIL FROM:<shop@example.org> FOO=BAR'], /^555 5\.5\.4 .*FOO/],
    ['DSN parameters on MAIL', ['MAIL FROM:<shop@example.org> RET=HDRS ENVID=x1', 'RCPT TO:<ada@example.com>'], /^250 /],
    ['DSN parameters on RCPT', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;ada@example.com'], /^250 /],
    ['RET neither FULL nor HDRS', ['MAIL FROM:<shop@example.org> RET=BODY'], /^501 /],
    ['an ENVID over 100 characters (RFC 3461 4.4)', [`MAIL FROM:<shop@example.org> ENVID=${'e'.repeat(101)}`], /^501 5\.5\.4 ENVID longer than 100/],
    ['NOTIFY=NEVER with another value', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@example.com> NOTIFY=NEVER,DELAY'], /^501 /],
    ['an unknown NOTIFY value', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@example.com> NOTIFY=ALWAYS'], /^501 /],
    ['an ORCPT without an address type', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@example.com> ORCPT=ada@example.com'], /^501 /],
    ['an unknown RCPT parameter', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@example.com> XFOO'], /^555 5\.5\.4 /],
    ['a UTF-8 sender without SMTPUTF8', ['MAIL FROM:<pelé@example.org>'], /^553 5\.6\.7 /],
    ['a UTF-8 recipient without SMTPUTF8', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<josé@exämple.org>'], /^553 5\.6\.7 /],
    ['UTF-8 addresses with SMTPUTF8', ['MAIL FROM:<pelé@example.org> SMTPUTF8', 'RCPT TO:<josé@exämple.org>'], /^250 /],
    ['an A-label (xn--) domain without SMTPUTF8', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@xn--exmple-cua.org>'], /^250 /],
    ['SIZE and BODY', ['MAIL FROM:<shop@example.org> SIZE=100 BODY=8BITMIME', 'RCPT TO:<ada@example.com>'], /^250 /],
  ];
  for (const [what, commands, want] of cases) {
    test(what, async () => {
      c = await open(l.port);
      try {
        let last = '';
        for (const cmd of commands) {
          last = await c.cmd(cmd);
          if (!last.startsWith('250')) break;
        }
        assert.match(last, want);
        assert.match(await c.cmd('RSET'), /^250 /, 'the session goes on');
      } finally {
        c.close();
      }
    });
  }

  test('the DSN parameters are kept in the intake record, per recipient, xtext-decoded', async () => {
    c = await open(l.port);
    try {
      assert.match(await c.cmd('MAIL FROM:<shop@example.org> RET=FULL ENVID=order+2B7'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<ada@example.com> NOTIFY=DELAY,FAILURE ORCPT=rfc822;Ada+2Bx@example.com'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /);
      assert.match(await c.cmd('DATA'), /^354 /);
      assert.match(await c.cmd('Subject: dsn\r\n\r\nhi\r\n.'), /^250 /);
      const m = (await l.messages()).find((x) => x.body.includes('Subject: dsn'))!;
      assert.deepEqual(m.meta.envelope.dsn, { ret: 'FULL', envid: 'order+7', rcpt: { 'ada@example.com': { notify: ['DELAY', 'FAILURE'], orcpt: 'rfc822;Ada+x@example.com' } } });
    } finally {
      c.close();
    }
  });

  test('AUTH= on MAIL is unknown where AUTH is not offered', async () => {
    c = await open(l.port);
    try {
      assert.match(await c.cmd('MAIL FROM:<shop@example.org> AUTH=<>'), /^555 5\.5\.4 /);
    } finally {
      c.close();
    }
  });
});
