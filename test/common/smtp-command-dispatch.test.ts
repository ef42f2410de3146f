/*
 * TunedConnection._onCommand sends MAIL, RCPT and DATA of an established session
 * straight to their handlers (common/smtp-server.ts). It must answer every line
 * exactly as smtp-server's own dispatch does: the same script of commands, the
 * awkward ones included, goes to a real server over a socket twice, once as
 * shipped and once with smtp-server's _onCommand put back on TunedConnection,
 * and the two transcripts must be the same. A third check counts which lines
 * still went through smtp-server's dispatch, so a fast path that is never
 * taken fails too.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SMTPServerOptions } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { PostinoSMTPServer, TunedConnection, fastVerb } from '../../common/smtp-server.js';
import { RawSmtp } from '../helpers/smtp-raw.js';

type OnCommand = (this: SMTPConnection, command: Buffer, callback?: () => void) => void;

/** Lines sent one at a time; `<body>` sends a message body and its terminator. */
const SCRIPT = [
  'MAIL FROM:<early@example.org>', // before EHLO: 503 from smtp-server's check
  'RCPT TO:<early@example.org>',
  'DATA',
  'EHLO client.test',
  'DATA', // no recipient yet: 503
  'RCPT TO:<b@example.org>', // no sender yet: 503
  'mail from:<a@example.org>',
  'MAIL FROM:<a@example.org>', // nested MAIL: 503
  'RSET',
  'MaIl FrOm:<a@example.org> SIZE=100',
  'rcpt to:<b@example.org>',
  'RCPT TO:<c@example.org> XFOO=1', // parameter we do not take: 555
  'RCPT TO:<thrower@example.org>', // the handler throws: 451
  'RCPT\tTO:<d@example.org>', // not the verb and a space: smtp-server decides (500)
  'RCPTX TO:<d@example.org>',
  'DATAX',
  'MAIL', // the verb alone
  'RCPT',
  'data',
  '<body>',
  'MAIL FROM:<>',
  'RCPT TO:<e@example.org>',
  'DATA',
  '<body>',
  'NOOP',
  'QUIT',
];

async function transcript(onCommand?: OnCommand): Promise<{ replies: string[]; received: string[] }> {
  const received: string[] = [];
  const options: SMTPServerOptions = {
    logger: false,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    size: 1000,
    onRcptTo(address, _session, cb) {
      if (address.address === 'thrower@example.org') throw new Error('handler bug');
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push(`${session.envelope.mailFrom && session.envelope.mailFrom.address} ${session.envelope.rcptTo.map((r) => r.address).join(',')} ${Buffer.concat(chunks).toString()}`);
        cb(null, 'queued');
      });
    },
  };
  const proto = TunedConnection.prototype as unknown as { _onCommand: OnCommand };
  const own = Object.getOwnPropertyDescriptor(proto, '_onCommand');
  if (onCommand) proto._onCommand = onCommand;
  const server = new PostinoSMTPServer(options, { greetingDelayMs: 0, trustedNetworks: [] });
  const port = await server.listenAsync(0, '127.0.0.1');
  const c = await RawSmtp.connect(port);
  const replies: string[] = [];
  try {
    replies.push(await c.reply());
    for (const line of SCRIPT) {
      if (line === '<body>') {
        c.write('Subject: t\r\n\r\n..dot line\r\nbody\r\n');
        replies.push(await c.cmd('.'));
      } else {
        replies.push(await c.cmd(line));
      }
    }
  } finally {
    c.close();
    await server.closeAsync();
    if (own) Object.defineProperty(proto, '_onCommand', own);
  }
  return { replies, received };
}

test('MAIL, RCPT and DATA are answered exactly as smtp-server dispatches them', async () => {
  const library = (SMTPConnection.prototype as unknown as { _onCommand: OnCommand })._onCommand;
  const fast = await transcript();
  const reference = await transcript(library);
  assert.deepEqual(fast.replies, reference.replies);
  assert.deepEqual(fast.received, reference.received);
  // The script does reach the cases it is for.
  assert.match(fast.replies[1]!, /^503 /, 'MAIL before EHLO');
  assert.ok(fast.replies.some((r) => r.startsWith('451 ')), 'the throwing handler');
  assert.ok(fast.replies.some((r) => r.startsWith('555 ')), 'an unknown parameter');
  assert.equal(fast.received.length, 2);
  assert.match(fast.received[0]!, /^a@example\.org b@example\.org Subject: t\r\n\r\n\.dot line\r\nbody\r\n$/);
});

test('the fast path is taken: in an established session MAIL, RCPT and DATA bypass smtp-server\'s dispatch, other lines do not', async () => {
  // TunedConnection calls smtp-server's method as super._onCommand, looked up on the prototype at each call.
  const proto = SMTPConnection.prototype as unknown as { _onCommand: OnCommand };
  const library = proto._onCommand;
  const dispatched: string[] = [];
  proto._onCommand = function (this: SMTPConnection, command: Buffer, callback?: () => void) {
    dispatched.push(command.toString());
    library.call(this, command, callback);
  };
  try {
    await transcript();
  } finally {
    proto._onCommand = library;
  }
  // Only lines smtp-server must judge: those before EHLO, EHLO itself, lines that are not the bare verb and a space, RSET, NOOP, QUIT.
  assert.deepEqual(dispatched, [
    'MAIL FROM:<early@example.org>',
    'RCPT TO:<early@example.org>',
    'DATA',
    'EHLO client.test',
    'RSET',
    'RCPT\tTO:<d@example.org>',
    'RCPTX TO:<d@example.org>',
    'DATAX',
    'NOOP',
    'QUIT',
  ]);
});

test('fastVerb: the three verbs in any case, alone or before a space; nothing else', () => {
  const v = (s: string): string | undefined => fastVerb(Buffer.from(s, 'latin1'));
  assert.equal(v('MAIL FROM:<a@b>'), 'MAIL');
  assert.equal(v('mail'), 'MAIL');
  assert.equal(v('rCpT TO:<a@b>'), 'RCPT');
  assert.equal(v('DATA'), 'DATA');
  assert.equal(v('data '), 'DATA');
  for (const s of ['MAI', 'MAILX', 'MAIL\tFROM', 'DATA\r', 'RSET', 'NOOP', 'M@IL x', 'ma\u0131l x', 'MAIL'.replace('M', '\u00cd')]) assert.equal(v(s), undefined, s);
});
