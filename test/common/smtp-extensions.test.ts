/*
 * PostinoSMTPServer advertises DSN and REQUIRETLS only when it takes their
 * parameters (SmtpExtensions): a server used without the intake (the capture
 * sink) must not offer DSN and then refuse NOTIFY with 555.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BASE_EXTENSIONS, PostinoSMTPServer, type SmtpExtensions } from '../../common/smtp-server.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

async function ehlo(extensions?: SmtpExtensions): Promise<string> {
  const server = new PostinoSMTPServer({ logger: false, authOptional: true, disabledCommands: ['AUTH', 'STARTTLS'], disableReverseLookup: true }, { greetingDelayMs: 0, trustedNetworks: [] }, undefined, extensions);
  const port = await server.listenAsync(0, '127.0.0.1');
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    const reply = await c.cmd('EHLO client.test');
    if (extensions?.rcptParameters.includes('NOTIFY')) {
      assert.match(await c.cmd('MAIL FROM:<a@example.org> RET=HDRS'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<b@example.org> NOTIFY=FAILURE ORCPT=rfc822;b@example.org'), /^250 /);
    } else {
      assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250 /);
      assert.match(await c.cmd('RCPT TO:<b@example.org> NOTIFY=FAILURE'), /^555 5\.5\.4 /);
    }
    return reply;
  } finally {
    c.close();
    await server.closeAsync();
  }
}

test('the base extensions: no DSN, no REQUIRETLS in EHLO, and NOTIFY refused', async () => {
  const reply = await ehlo();
  assert.doesNotMatch(reply, /DSN|REQUIRETLS/);
  assert.match(reply, /SMTPUTF8/);
});

test('with the DSN parameters taken, DSN is offered and they are accepted', async () => {
  const reply = await ehlo({ mailParameters: [...BASE_EXTENSIONS.mailParameters, 'RET', 'ENVID'], rcptParameters: ['NOTIFY', 'ORCPT'] });
  assert.match(reply, /^250[ -]DSN/m);
});
