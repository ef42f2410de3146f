/*
 * smtp-session.ts against scripted SMTP servers on loopback (a real socket, a
 * server that answers line by line as the test says): the body's bytes on the
 * wire against nodemailer's DataStream, a server without PIPELINING, AUTH
 * LOGIN, a 354 after every recipient was refused, STARTTLS required but not
 * offered, and hostile replies (endless, not SMTP) that must end the session
 * with a clear error instead of buffering or hanging.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { SmtpSession, type SessionOptions, type SmtpError } from '../../common/smtp-session.js';
import { nodemailerWire } from '../helpers/data-stream.js';
import { listenLoopback, scriptedSmtp as scripted, type Listening } from '../helpers/scripted-smtp.js';

const opts = (port: number, o: Partial<SessionOptions> = {}): SessionOptions => ({ host: '127.0.0.1', port, secure: false, requireTls: false, name: 'session.test', timeoutMs: 5_000, tls: {}, ...o });

test('the body on the wire is what nodemailer would send: dots stuffed, bare CR/LF made CRLF, a final dot on its own line', async () => {
  const srv = await scripted();
  const s = await SmtpSession.open(opts(srv.port));
  const bodies = [
    'Subject: a\r\n\r\nplain\r\n',
    'Subject: b\r\n\r\n.leading dot\r\n..two\r\nno final CRLF',
    'Subject: c\n\nbare LF\nand bare CR\r.dot after CR\r\n',
    '',
    '.',
  ].map((b) => Buffer.from(b, 'latin1'));
  try {
    for (const b of bodies) await s.send({ from: 'a@example.org', to: ['b@example.com'] }, b);
    // The same bodies as streams, in two chunks split at every third byte boundary of the first.
    for (const b of bodies) await s.send({ from: 'a@example.org', to: ['b@example.com'] }, Readable.from([b.subarray(0, 3), b.subarray(3)].filter((c) => c.length)));
    assert.equal(srv.bodies.length, bodies.length * 2);
    for (const [i, b] of [...bodies, ...bodies].entries()) assert.deepEqual(srv.bodies[i]!.toString('latin1'), await nodemailerWire([b]), `body ${i}`);
  } finally {
    s.quit();
    await srv.close();
  }
});

test('PIPELINING: MAIL, every RCPT and DATA in one write; without it, one command per reply', async () => {
  for (const pipelining of [true, false]) {
    const srv = await scripted({ ehlo: pipelining ? ['PIPELINING'] : ['SIZE 1000000'] });
    const s = await SmtpSession.open(opts(srv.port));
    try {
      const before = srv.groups.length;
      const info = await s.send({ from: 'a@example.org', to: ['b@example.com', 'c@example.com'] }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
      assert.deepEqual(info.accepted, ['b@example.com', 'c@example.com']);
      assert.deepEqual(srv.lines.slice(-4), ['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.com>', 'RCPT TO:<c@example.com>', 'DATA']);
      // Reads of command lines: one for the envelope group, or four (MAIL, RCPT, RCPT, DATA).
      assert.deepEqual(srv.groups.slice(before), pipelining ? [['MAIL', 'RCPT', 'RCPT', 'DATA']] : [['MAIL'], ['RCPT'], ['RCPT'], ['DATA']], `pipelining ${pipelining}`);
    } finally {
      s.quit();
      await srv.close();
    }
  }
});

test('a 354 after every recipient was refused gets an empty message, and the session stays in step', async () => {
  // A server that answers DATA with 354 even though no RCPT was taken (RFC 2920 3.1 allows it).
  const srv = await scripted({ answer: (l) => (l.startsWith('RCPT TO:<bad') ? '550 5.1.1 no such user' : l === 'DATA' ? '354 go on' : undefined) });
  const s = await SmtpSession.open(opts(srv.port));
  try {
    await assert.rejects(s.send({ from: 'a@example.org', to: ['bad@example.com'] }, Buffer.from('x\r\n')), (e: SmtpError) => e.code === 'EENVELOPE' && e.responseCode === 550 && e.rejectedErrors?.[0]?.recipient === 'bad@example.com');
    assert.equal(srv.bodies[0]?.toString(), '.\r\n', 'the open DATA was ended with a dot alone');
    await s.reset();
    const info = await s.send({ from: 'a@example.org', to: ['bad2@example.com', 'ok@example.com'] }, Buffer.from('x\r\n'));
    assert.deepEqual(info.accepted, ['ok@example.com']);
    assert.deepEqual(info.rejected, ['bad2@example.com']);
    assert.equal(info.response, '250 2.0.0 Ok: queued');
  } finally {
    s.quit();
    await srv.close();
  }
});

test('AUTH: PLAIN when offered, LOGIN when only LOGIN is; a refused login is EAUTH with the reply', async () => {
  const creds = { user: 'relay', pass: 'sécret' };
  const plainSrv = await scripted({ ehlo: ['AUTH LOGIN PLAIN'], answer: (l) => (l.startsWith('AUTH PLAIN ') ? (Buffer.from(l.slice(11), 'base64').toString() === `\0relay\0sécret` ? '235 ok' : '535 5.7.8 no') : undefined) });
  const loginSrv = await scripted({
    ehlo: ['AUTH LOGIN'],
    answer: (l) => (l === 'AUTH LOGIN' ? '334 VXNlcm5hbWU6' : l === Buffer.from('relay').toString('base64') ? '334 UGFzc3dvcmQ6' : l === Buffer.from('wrong').toString('base64') ? '535 5.7.8 bad credentials' : l.startsWith('MAIL') || l.startsWith('RCPT') || l.startsWith('DATA') || l.startsWith('EHLO') ? undefined : '235 ok'),
  });
  try {
    (await SmtpSession.open(opts(plainSrv.port, { auth: creds }))).quit();
    assert.ok(plainSrv.lines.some((l) => l.startsWith('AUTH PLAIN ')));
    (await SmtpSession.open(opts(loginSrv.port, { auth: creds }))).quit();
    assert.ok(loginSrv.lines.includes('AUTH LOGIN'));
    await assert.rejects(SmtpSession.open(opts(loginSrv.port, { auth: { user: 'relay', pass: 'wrong' } })), (e: SmtpError) => e.code === 'EAUTH' && e.responseCode === 535);
  } finally {
    await plainSrv.close();
    await loginSrv.close();
  }
});

test('STARTTLS required but not offered: ETLS with the reply; refused greeting: EPROTOCOL with the reply', async () => {
  const noTls = await scripted({ answer: (l) => (l === 'STARTTLS' ? '502 5.5.1 not offered' : undefined) });
  const refusing = await scripted({ greeting: '554 5.7.1 not you' });
  try {
    await assert.rejects(SmtpSession.open(opts(noTls.port, { requireTls: true })), (e: SmtpError) => e.code === 'ETLS' && e.responseCode === 502);
    await assert.rejects(SmtpSession.open(opts(refusing.port)), (e: SmtpError) => e.code === 'EPROTOCOL' && e.responseCode === 554);
  } finally {
    await noTls.close();
    await refusing.close();
  }
});

test('hostile replies end the session with a clear error: an endless line, a line that is not SMTP, a long multi-line reply', async () => {
  const servers: Listening[] = [];
  const serve = async (talk: (sock: net.Socket) => void): Promise<number> => {
    const srv = await listenLoopback(talk);
    servers.push(srv);
    return srv.port;
  };
  const endless = await serve((sock) => {
    const chunk = Buffer.alloc(16 * 1024, 'x');
    let sent = 0;
    // Bounded: 4 MiB of one line, far past the cap, then silence.
    const more = (): void => {
      while (sent < 256 && sock.write(chunk)) sent++;
      if (sent < 256) sock.once('drain', more);
    };
    sock.write('220');
    more();
  });
  const garbage = await serve((sock) => sock.write('HTTP/1.1 400 Bad Request\r\n\r\n'));
  const manyLines = await serve((sock) => sock.write(`${'220-padding padding padding padding padding padding\r\n'.repeat(2_000)}220 ok\r\n`));
  try {
    const started = Date.now();
    await assert.rejects(SmtpSession.open(opts(endless)), (e: SmtpError) => e.code === 'EPROTOCOL' && /longer than/.test(e.message));
    await assert.rejects(SmtpSession.open(opts(garbage)), (e: SmtpError) => e.code === 'EPROTOCOL' && /Not an SMTP reply/.test(e.message));
    await assert.rejects(SmtpSession.open(opts(manyLines)), (e: SmtpError) => e.code === 'EPROTOCOL' && /longer than/.test(e.message));
    assert.ok(Date.now() - started < 4_000, 'ended by the cap, not by the timeout');
  } finally {
    for (const s of servers) await s.close();
  }
});

test('a server that goes silent: ETIMEDOUT after the session timeout, also while idle (the loss listener hears of it)', async () => {
  const silent = await scripted({ ehlo: ['SIZE 1000000'], answer: (l) => (l.startsWith('MAIL') ? '' : undefined) });
  try {
    const s = await SmtpSession.open(opts(silent.port, { timeoutMs: 300 }));
    const lost = new Promise<SmtpError>((r) => s.whenLost(r));
    assert.equal((await lost).code, 'ETIMEDOUT', 'idle past the timeout');
    assert.ok(s.destroyed);
    const t = await SmtpSession.open(opts(silent.port, { timeoutMs: 300 }));
    // MAIL gets no answer at all (lock-step, no PIPELINING): the transaction fails at the timeout.
    await assert.rejects(t.send({ from: 'a@example.org', to: ['b@example.com'] }, Buffer.from('x\r\n')), (e: SmtpError) => e.code === 'ETIMEDOUT' && e.responseCode === undefined);
  } finally {
    await silent.close();
  }
});

test('the server stops reading mid-body and goes away (a streamed body): the send fails at once with a connection code; a 421 to MAIL is reported as that reply', async () => {
  const cutting = await listenLoopback((sock) => {
    sock.write('220 x\r\n');
    let inData = false;
    sock.on('data', (d: Buffer) => {
      if (inData) {
        // The first body bytes: stop reading, so the client's writes fill the socket buffers and
        // it waits for 'drain'; then go away. No 'drain' ever comes: the failure must end the wait.
        sock.pause();
        setTimeout(() => sock.destroy(), 300);
        return;
      }
      for (const line of d.toString('latin1').split('\r\n').filter(Boolean)) {
        if (line === 'DATA') inData = true;
        sock.write(line.startsWith('EHLO') ? '250-x\r\n250 PIPELINING\r\n' : line === 'DATA' ? '354 go\r\n' : '250 ok\r\n');
      }
    });
  });
  // 421 closes the channel (RFC 5321 3.8): the server says it and hangs up.
  const closing = await scripted({ answer: (l) => (l.startsWith('MAIL') ? '421 4.3.2 shutting down' : undefined) });
  try {
    const s = await SmtpSession.open(opts(cutting.port));
    // Up to 64 MiB in 64 KiB chunks, produced as the socket takes them: more than loopback buffers hold.
    const chunks = (async function* () {
      for (let i = 0; i < 1024; i++) yield Buffer.alloc(64 * 1024, 'a');
    })();
    const body = Readable.from(chunks);
    const started = Date.now();
    const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the send still waits 5 s after the connection went')), 5_000).unref());
    await assert.rejects(Promise.race([s.send({ from: 'a@example.org', to: ['b@example.com'] }, body), hung]), (e: SmtpError) => e.code === 'ECONNECTION' && e.responseCode === undefined);
    assert.ok(Date.now() - started < 2_000, 'failed when the connection went, not at a timeout');
    assert.ok(s.destroyed && body.destroyed, 'session and body stream both ended');
    const t = await SmtpSession.open(opts(closing.port));
    await assert.rejects(t.send({ from: 'a@example.org', to: ['b@example.com'] }, Buffer.from('x\r\n')), (e: SmtpError) => e.code === 'EENVELOPE' && e.responseCode === 421);
  } finally {
    await cutting.close();
    await closing.close();
  }
});
