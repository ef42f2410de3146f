/*
 * PostinoSMTPServer advertises DSN and REQUIRETLS only when it takes their
 * parameters (SmtpExtensions): a server used without the intake (the capture
 * sink) must not offer DSN and then refuse NOTIFY with 555.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
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

test('MAIL and RCPT are parsed once each, and smtp-server records what the client sent, refused commands between', async () => {
  const proto = SMTPConnection.prototype as unknown as { _parseAddressCommand: (...a: unknown[]) => unknown };
  const original = proto._parseAddressCommand;
  const parses: string[] = [];
  proto._parseAddressCommand = function (this: unknown, ...a: unknown[]) {
    parses.push(String(a[1]));
    return original.apply(this, a);
  };
  const seen: string[] = [];
  const server = new PostinoSMTPServer(
    {
      logger: false,
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      onMailFrom: (a, _s, cb) => (seen.push(`from ${a.address} ${JSON.stringify(a.args)}`), cb()),
      onRcptTo: (a, _s, cb) => (seen.push(`to ${a.address} ${JSON.stringify(a.dsn ?? null)}`), cb()),
    },
    { greetingDelayMs: 0, trustedNetworks: [] },
    undefined,
    { mailParameters: [...BASE_EXTENSIONS.mailParameters, 'RET', 'ENVID'], rcptParameters: ['NOTIFY', 'ORCPT'] },
  );
  const port = await server.listenAsync(0, '127.0.0.1');
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    assert.match(await c.cmd('MAIL FROM:<a@example.org> XFOO=1'), /^555 /);
    assert.match(await c.cmd('MAIL FROM:a@example.org'), /^501 /);
    assert.match(await c.cmd('MAIL FROM:<s@example.org> RET=HDRS ENVID=e1'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<x@example.org> XBAR=2'), /^555 /);
    assert.match(await c.cmd('RCPT TO:<y@example.org> NOTIFY=FAILURE,DELAY ORCPT=rfc822;o@example.org'), /^250 /);
    assert.match(await c.cmd('RCPT TO:<z@example.org>'), /^250 /);
    assert.match(await c.cmd('RCPT TO: <w@example.org>'), /^250 /); // a space after the colon: not the plain form
    assert.deepEqual(seen, ['from s@example.org {"RET":"HDRS","ENVID":"e1"}', 'to y@example.org {"notify":["FAILURE","DELAY"],"orcpt":"rfc822;o@example.org"}', 'to z@example.org null', 'to w@example.org null']);
    // The plain lines are parsed by smtp-address.ts alone; the others by smtp-server once each: the
    // refusal check's parse, handed to smtp-server's handler (a second would double an entry).
    assert.deepEqual(parses, ['MAIL FROM:a@example.org', 'RCPT TO: <w@example.org>']);
  } finally {
    proto._parseAddressCommand = original;
    c.close();
    await server.closeAsync();
  }
});
