/*
 * SmtpPool passes the sender's RFC 3461 parameters on per recipient (NOTIFY and
 * ORCPT differ by RCPT; RET/ENVID on MAIL), to a real server on loopback that
 * offers DSN, and says so in SentInfo.dsn; to a server that does not offer DSN
 * it sends none (and says so).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SMTPServerSession } from 'smtp-server';
import { SmtpPool } from '../../common/smtp-pool.js';
import { BASE_EXTENSIONS, PostinoSMTPServer } from '../../common/smtp-server.js';

const DSN_EXTENSIONS = { mailParameters: [...BASE_EXTENSIONS.mailParameters, 'RET', 'ENVID'], rcptParameters: ['NOTIFY', 'ORCPT'] };

async function server(dsn: boolean): Promise<{ port: number; sessions: SMTPServerSession['envelope'][]; close(): Promise<void> }> {
  const sessions: SMTPServerSession['envelope'][] = [];
  const s = new PostinoSMTPServer(
    {
      logger: false,
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      onData(stream, session, cb) {
        stream.resume();
        stream.on('end', () => {
          sessions.push(structuredClone(session.envelope));
          cb(null, 'Ok');
        });
      },
    },
    { greetingDelayMs: 0, trustedNetworks: [] },
    undefined,
    dsn ? DSN_EXTENSIONS : BASE_EXTENSIONS,
  );
  const port = await s.listenAsync(0, '127.0.0.1');
  return { port, sessions, close: () => s.closeAsync() };
}

const pool = (port: number): SmtpPool => new SmtpPool({ host: '127.0.0.1', port, secure: false, requireTls: false, name: 'client.test', maxConnections: 1, maxMessages: 10, timeoutMs: 5_000, tls: {} });
const body = async (): Promise<Buffer> => Buffer.from('Subject: x\r\n\r\nhello\r\n');
const dsn = { ret: 'HDRS' as const, envid: 'order+42 =x', rcpt: { 'a@example.org': { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;A+1@example.org' }, 'c@example.org': { notify: ['NEVER'] } } };

test('NOTIFY and ORCPT per recipient, RET and ENVID on MAIL, xtext round trip, to a server offering DSN', async () => {
  const srv = await server(true);
  const p = pool(srv.port);
  try {
    const info = await p.send({ from: 's@example.org', to: ['a@example.org', 'b@example.org', 'c@example.org'], dsn }, body);
    assert.equal(info.dsn, true);
    const env = srv.sessions[0]!;
    assert.deepEqual(env.dsn, { ret: 'HDRS', envid: 'order+42 =x' });
    const byAddr = Object.fromEntries(env.rcptTo.map((r) => [r.address, r.dsn]));
    assert.deepEqual(byAddr['a@example.org'], { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;A+1@example.org' });
    assert.equal(byAddr['b@example.org'], undefined, 'a recipient without parameters gets none');
    assert.deepEqual(byAddr['c@example.org'], { notify: ['NEVER'] });
  } finally {
    p.close();
    await srv.close();
  }
});

test('to a server without DSN nothing is sent (no 555) and SentInfo.dsn is false', async () => {
  const srv = await server(false);
  const p = pool(srv.port);
  try {
    const info = await p.send({ from: 's@example.org', to: ['a@example.org'], dsn }, body);
    assert.equal(info.dsn, false);
    assert.deepEqual(info.accepted, ['a@example.org']);
  } finally {
    p.close();
    await srv.close();
  }
});
