/*
 * ESMTP extensions on the shared intake (common/smtp-intake.ts + smtp-server.ts),
 * over raw SMTP against the listener: what EHLO offers, 555 5.5.4 for a MAIL or
 * RCPT parameter of an extension not offered (DSN is not), 553 5.6.7 for a UTF-8
 * address without SMTPUTF8. The forwarder's side: test/forwarder/smtp-tls.test.ts.
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

  test('EHLO offers SMTPUTF8, 8BITMIME, SIZE and STARTTLS, not DSN or REQUIRETLS', async () => {
    const raw = await RawSmtp.connect(l.port);
    try {
      await raw.reply();
      const ehlo = await raw.cmd('EHLO client.test');
      for (const ext of ['SMTPUTF8', '8BITMIME', 'SIZE', 'STARTTLS']) assert.match(ehlo, new RegExp(`^250[ -]${ext}`, 'm'));
      assert.doesNotMatch(ehlo, /DSN|REQUIRETLS/);
    } finally {
      raw.close();
    }
  });

  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown MAIL parameter', ['MAIL FROM:<shop@example.org> FOO=BAR'], /^555 5\.5\.4 .*FOO/],
    ['DSN parameters on MAIL (DSN not offered)', ['MAIL FROM:<shop@example.org> RET=HDRS ENVID=x1'], /^555 5\.5\.4 /],
    ['a DSN parameter on RCPT', ['MAIL FROM:<shop@example.org>', 'RCPT TO:<ada@example.com> NOTIFY=NEVER'], /^555 5\.5\.4 .*NOTIFY/],
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

  test('AUTH= on MAIL is unknown where AUTH is not offered', async () => {
    c = await open(l.port);
    try {
      assert.match(await c.cmd('MAIL FROM:<shop@example.org> AUTH=<>'), /^555 5\.5\.4 /);
    } finally {
      c.close();
    }
  });
});
