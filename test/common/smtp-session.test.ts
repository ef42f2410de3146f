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

interface Scripted {
  port: number;
  /** Every command line the server read, in order (DATA contents excluded). */
  lines: string[];
  /** The raw bytes of each message's DATA, final dot included. */
  bodies: Buffer[];
  /** How many reads brought command lines (one per read for a client that waits for each reply). */
  reads: number;
  close(): Promise<void>;
}

/**
 * A server answering each command line with `answer(line)` (undefined: "250 ok"),
 * after `greeting`. DATA gets 354 (unless answered otherwise) and then reads up
 * to the final dot, which gets `final` ("250 queued").
 */
async function scripted(o: { greeting?: string; ehlo?: string[]; answer?: (line: string) => string | undefined; final?: string } = {}): Promise<Scripted> {
  const lines: string[] = [];
  const bodies: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const s: Scripted = { port: 0, lines, bodies, reads: 0, close: () => new Promise((r) => server.close(() => r())) };
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let inData = false;
    sock.write(o.greeting ?? '220 scripted ESMTP\r\n');
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!inData) s.reads++;
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          const atStart = buf.subarray(0, 3).equals(Buffer.from('.\r\n'));
          if (end < 0 && !atStart) return;
          const cut = atStart ? 3 : end + 5;
          bodies.push(buf.subarray(0, cut));
          buf = buf.subarray(cut);
          inData = false;
          sock.write(`${o.final ?? '250 queued'}\r\n`);
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString('latin1');
        buf = buf.subarray(nl + 2);
        lines.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        const given = o.answer?.(line);
        if (verb === 'EHLO' && given === undefined) sock.write(['250-scripted', ...(o.ehlo ?? ['PIPELINING']).map((e) => `250-${e}`), '250 8BITMIME'].join('\r\n') + '\r\n');
        else if (verb === 'DATA' && given === undefined) {
          inData = true;
          sock.write('354 go on\r\n');
        } else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else if (given !== '') sock.write(`${given ?? '250 ok'}\r\n`); // '': no answer at all
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.port = (server.address() as net.AddressInfo).port;
  const close = s.close;
  s.close = async () => {
    for (const x of sockets) x.destroy();
    await close();
  };
  return s;
}

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
      const before = srv.reads;
      const info = await s.send({ from: 'a@example.org', to: ['b@example.com', 'c@example.com'] }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
      assert.deepEqual(info.accepted, ['b@example.com', 'c@example.com']);
      assert.deepEqual(srv.lines.slice(-4), ['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.com>', 'RCPT TO:<c@example.com>', 'DATA']);
      // Reads of command lines: one for the envelope group, or four (MAIL, RCPT, RCPT, DATA).
      assert.equal(srv.reads - before, pipelining ? 1 : 4, `pipelining ${pipelining}`);
    } finally {
      s.quit();
      await srv.close();
    }
  }
});

test('a 354 after every recipient was refused gets an empty message, and the session stays in step', async () => {
  // A server that answers DATA with 354 even though no RCPT was taken (RFC 2920 3.1 allows it).
  const srv = await scripted({ answer: (l) => (l.startsWith('RCPT TO:<bad') ? '550 5.1.1 no such user' : undefined) });
  const s = await SmtpSession.open(opts(srv.port));
  try {
    await assert.rejects(s.send({ from: 'a@example.org', to: ['bad@example.com'] }, Buffer.from('x\r\n')), (e: SmtpError) => e.code === 'EENVELOPE' && e.responseCode === 550 && e.rejectedErrors?.[0]?.recipient === 'bad@example.com');
    assert.equal(srv.bodies[0]?.toString(), '.\r\n', 'the open DATA was ended with a dot alone');
    await s.reset();
    const info = await s.send({ from: 'a@example.org', to: ['bad2@example.com', 'ok@example.com'] }, Buffer.from('x\r\n'));
    assert.deepEqual(info.accepted, ['ok@example.com']);
    assert.deepEqual(info.rejected, ['bad2@example.com']);
    assert.equal(info.response, '250 queued');
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
  const refusing = await scripted({ greeting: '554 5.7.1 not you\r\n' });
  try {
    await assert.rejects(SmtpSession.open(opts(noTls.port, { requireTls: true })), (e: SmtpError) => e.code === 'ETLS' && e.responseCode === 502);
    await assert.rejects(SmtpSession.open(opts(refusing.port)), (e: SmtpError) => e.code === 'EPROTOCOL' && e.responseCode === 554);
  } finally {
    await noTls.close();
    await refusing.close();
  }
});

test('hostile replies end the session with a clear error: an endless line, a line that is not SMTP, a long multi-line reply', async () => {
  const servers: net.Server[] = [];
  const serve = async (talk: (sock: net.Socket) => void): Promise<number> => {
    const srv = net.createServer((sock) => {
      sock.on('error', () => undefined);
      talk(sock);
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return (srv.address() as net.AddressInfo).port;
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
    for (const s of servers) s.close();
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
  const servers: net.Server[] = [];
  const serve = async (onLine: (sock: net.Socket, line: string) => void): Promise<number> => {
    const srv = net.createServer((sock) => {
      sock.on('error', () => undefined);
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
          onLine(sock, line);
        }
      });
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return (srv.address() as net.AddressInfo).port;
  };
  const cutting = await serve((sock, line) => sock.write(line.startsWith('EHLO') ? '250-x\r\n250 PIPELINING\r\n' : line === 'DATA' ? '354 go\r\n' : '250 ok\r\n'));
  const closing = await serve((sock, line) => (line.startsWith('MAIL') ? sock.end('421 4.3.2 shutting down\r\n') : sock.write(line.startsWith('EHLO') ? '250-x\r\n250 PIPELINING\r\n' : '250 ok\r\n')));
  try {
    const s = await SmtpSession.open(opts(cutting));
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
    const t = await SmtpSession.open(opts(closing));
    await assert.rejects(t.send({ from: 'a@example.org', to: ['b@example.com'] }, Buffer.from('x\r\n')), (e: SmtpError) => e.code === 'EENVELOPE' && e.responseCode === 421);
  } finally {
    for (const srv of servers) srv.close();
  }
});
