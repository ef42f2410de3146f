/*
 * plainAddressCommand (common/smtp-address.ts) must parse every MAIL FROM and RCPT TO
 * line it takes exactly as smtp-server's own `_parseAddressCommand` does, and leave
 * every other line to it. A generated corpus of lines (prefixes written every way,
 * addresses valid and not, IDN, IP literals, source routes, quoted and odd local
 * parts, non-ASCII and control bytes, parameters bare, valued, xtext-encoded, empty,
 * repeated, oddly spaced) goes through both, in both of smtp-server's address modes;
 * where the direct scan answers, the two answers must be deep-equal. The plain forms
 * clients send must be taken, so a fast path that answers nothing fails too.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { plainAddressCommand } from '../../common/smtp-address.js';

type Verb = 'mail from' | 'rcpt to';

/** smtp-server's parser, on an object holding the little of a connection it reads. */
function libraryParse(verb: Verb, line: Buffer, lenient: boolean): unknown {
  const self = { _server: { options: { lenientAddressParsing: lenient }, logger: { error: () => undefined } }, id: 'test', session: {} };
  return (SMTPConnection.prototype._parseAddressCommand as (this: unknown, name: string, command: Buffer) => unknown).call(self, verb, line);
}

const PREFIXES: Array<[Verb, string]> = [
  ['mail from', 'MAIL FROM:'],
  ['mail from', 'mail from:'],
  ['mail from', 'Mail From:'],
  ['mail from', 'MAIL FROM: '],
  ['mail from', 'MAIL  FROM:'],
  ['mail from', 'MAIL FROM :'],
  ['mail from', 'MAIL FROM:  '],
  ['rcpt to', 'RCPT TO:'],
  ['rcpt to', 'rcpt to:'],
  ['rcpt to', 'RCPT TO: '],
  ['rcpt to', 'RCPT  TO:'],
  ['rcpt to', 'rCpT tO:'],
];

const ADDRESSES = [
  '<a@example.org>',
  '<>',
  '<A.B-c+d_e=f@Sub.Example-Mail.ORG>',
  "<o'brien!#$%&*/?^`{|}~@x9.example>",
  '<a..b@x.org>',
  '<.a@x.org>',
  '<a.@x.org>',
  '<a@x..org>',
  '<a@.x.org>',
  '<a@x.org.>',
  '<a@x.-org>',
  '<a@x-.org>',
  '<a@-x.org>',
  '<a@x_y.org>',
  '<a@xn--bcher-kva.example>',
  '<a@sub.XN--bcher-kva.example>',
  '<a@xn--.example>',
  '<a@axn--b.example>',
  '<a@[127.0.0.1]>',
  '<a@[IPv6:::1]>',
  '<a@[300.1.1.1]>',
  '<@relay.example:a@x.org>',
  '<@r1.example,@r2.example:a@x.org>',
  '<a@b@c.org>',
  '<a>',
  '<postmaster>',
  '<PostMaster>',
  '<a b@x.org>',
  '<"quoted"@x.org>',
  '<a:b@x.org>',
  '<ä@x.org>',
  '<a@bücher.example>',
  '<a@x.org',
  'a@x.org',
  '<a@x.org>x',
  '<<a@x.org>>',
  '<a\u0001@x.org>',
  '<a@x.org\t>',
  `<${'l'.repeat(60)}@${'d'.repeat(188)}.org>`, // 253 octets
  `<${'l'.repeat(61)}@${'d'.repeat(188)}.org>`, // 254
  '<@>',
  '<a@>',
];

const TAILS = [
  '',
  ' SIZE=100',
  ' size=100',
  ' BODY=8BITMIME',
  ' SMTPUTF8',
  ' SIZE=100 BODY=8BITMIME SMTPUTF8',
  ' RET=FULL ENVID=abc',
  ' ENVID=a+2Bb',
  ' ENVID=a+0D+0Ab',
  ' NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b.org',
  ' SIZE=',
  ' =x',
  ' SIZE=1 SIZE=2',
  ' SIZE=1 size=2',
  ' SIZE=1  BODY=7BIT',
  ' SIZE=1 ',
  ' ',
  '\tSIZE=1',
  ' X-FOO=bar',
  ' A=b=c',
  ' CONSTRUCTOR=1',
  ' __proto__=1',
  ' ENVID=a\u0001b',
  ' SIZE=100\u007f',
  ' AUTH=<>',
  ' AUTH=a:b',
];

test('the direct scan answers as smtp-server does wherever it answers, and takes the plain forms', () => {
  let taken = 0;
  let lines = 0;
  for (const lenient of [false, true]) {
    for (const [verb, prefix] of PREFIXES) {
      for (const address of ADDRESSES) {
        for (const tail of TAILS) {
          const line = Buffer.from(prefix + address + tail);
          lines++;
          const plain = plainAddressCommand(verb, line);
          if (plain === undefined) continue;
          taken++;
          assert.deepStrictEqual(plain, libraryParse(verb, line, lenient), `${JSON.stringify(line.toString())} (lenient ${lenient})`);
        }
      }
    }
  }
  // What clients send: taken, and the same as smtp-server's.
  for (const [verb, line] of [
    ['mail from', 'MAIL FROM:<a@example.org>'],
    ['mail from', 'MAIL FROM:<> SIZE=2048'],
    ['mail from', 'mail from:<bounce-123=x@shop.example> BODY=8BITMIME SIZE=100'],
    ['rcpt to', 'RCPT TO:<b@example.com>'],
    ['rcpt to', 'RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com'],
  ] as Array<[Verb, string]>) {
    const plain = plainAddressCommand(verb, Buffer.from(line));
    assert.ok(plain, `${line} taken by the direct scan`);
    assert.deepStrictEqual(plain, libraryParse(verb, Buffer.from(line), false));
  }
  assert.ok(taken > 1_000, `${taken} of ${lines} lines taken`);
  assert.ok(taken < lines / 2, `${taken} of ${lines} lines taken: the odd ones go to smtp-server`);
});

test('a line for the other verb is not taken', () => {
  assert.equal(plainAddressCommand('rcpt to', Buffer.from('MAIL FROM:<a@example.org>')), undefined);
  assert.equal(plainAddressCommand('mail from', Buffer.from('RCPT TO:<a@example.org>')), undefined);
  assert.equal(plainAddressCommand('mail from', Buffer.from('MAIL FROMX<a@example.org>')), undefined);
  assert.equal(plainAddressCommand('mail from', Buffer.from('MAIL FROM:')), undefined);
});
