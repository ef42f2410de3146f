/*
 * RFC 2920 PIPELINING on the relay client (smtp-client.ts → smtp-pool.ts →
 * smtp-session.ts), the client of both hops: forwarder → listener and
 * engine → MTA.
 *
 * A scripted server (helpers/scripted-smtp.ts) stands for the relay: it holds its replies to
 * an envelope until DATA has arrived (or nothing more came for a while, which
 * is how a lock-step client gets its answers) and records which commands it
 * had received before it answered any of them. So a client that pipelines
 * shows one group [MAIL, RCPT…, DATA]; one that does not shows one command
 * per group. It also records the lines that came after a refused DATA, so a
 * body sent anyway would show. A real smtp-server (which offers PIPELINING)
 * checks that the group leaves in one write.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { makeTransport, SendFailure, sendVia, type SendOutcome } from '../../common/smtp-client.js';
import { freePorts } from '../helpers/ports.js';
import { scriptedSmtp, type Scripted } from '../helpers/scripted-smtp.js';

interface RawOptions {
  pipelining: boolean;
  /** RCPT addresses refused, with the reply to give. */
  refuseRcpt?: Record<string, string>;
  /** Reply to MAIL FROM instead of 250. */
  refuseMail?: string;
  /** Reply to the end of the body instead of 250. */
  refuseMessage?: string;
}

/** The relay: replies held until DATA (or a quiet time), so `groups` shows what came before any answer. */
const rawRelay = (o: RawOptions): Promise<Scripted> =>
  scriptedSmtp({
    holdReplies: true,
    ehlo: o.pipelining ? ['PIPELINING'] : [],
    final: o.refuseMessage,
    answer: (line) => (line.startsWith('MAIL') ? o.refuseMail : line.startsWith('RCPT') ? o.refuseRcpt?.[/<([^>]*)>/.exec(line)?.[1] ?? ''] : undefined),
  });

const transport = (port: number) =>
  makeTransport(`smtp://127.0.0.1:${port}`, { requireTls: false, verifyCertificate: false, maxConnections: 1, messagesPerConnection: 100, timeoutMs: 5_000, clientName: 'pipe.test' });
const message = 'Subject: t\r\n\r\nhello\r\n';
const body = () => async () => Readable.from([Buffer.from(message)]);

async function send(port: number, to: string[]): Promise<{ outcome?: SendOutcome; failure?: SendFailure }> {
  const t = transport(port);
  try {
    const r = await sendVia(`smtp://127.0.0.1:${port}`, t, { from: 'a@example.org', to }, body());
    assert.equal(r.kind, 'sent');
    return { outcome: r.kind === 'sent' ? r.outcome : undefined };
  } catch (e) {
    if (e instanceof SendFailure) return { failure: e };
    throw e;
  } finally {
    t.close();
  }
}

test('PIPELINING offered: MAIL, every RCPT and DATA go as one group; a refused RCPT is per recipient and the body still goes', async () => {
  const relay = await rawRelay({ pipelining: true, refuseRcpt: { 'bad@example.com': '550 5.1.1 <bad@example.com>: unknown user' } });
  try {
    const { outcome } = await send(relay.port, ['ok@example.com', 'bad@example.com', 'ok2@example.com']);
    assert.deepEqual(relay.groups.slice(1, 2), [['MAIL', 'RCPT', 'RCPT', 'RCPT', 'DATA']], 'the envelope and DATA arrived before any reply');
    assert.deepEqual(outcome?.accepted, ['ok@example.com', 'ok2@example.com']);
    assert.equal(outcome?.rejected.length, 1);
    assert.deepEqual({ ...outcome!.rejected[0] }, { recipient: 'bad@example.com', code: 550, enhanced: '5.1.1', response: '550 5.1.1 <bad@example.com>: unknown user' });
    assert.equal(outcome?.reply.code, 250);
    assert.deepEqual(relay.bodies.map(String), [`${message}.\r\n`]);
  } finally {
    await relay.close();
  }
});

test('PIPELINING offered, every RCPT refused: DATA is refused and no body is sent; a 4xx among them makes the failure temporary', async () => {
  const relay = await rawRelay({ pipelining: true, refuseRcpt: { 'x@example.com': '550 5.1.1 unknown user', 'y@example.com': '450 4.2.0 try later' } });
  try {
    const { failure } = await send(relay.port, ['x@example.com', 'y@example.com']);
    assert.ok(failure, 'the transaction failed');
    assert.equal(failure.reply?.code, 450, 'the deferral, not the 554 to DATA, decides: y may still be delivered');
    assert.equal(failure.permanent, false);
    assert.deepEqual(failure.rejected.map((f) => [f.recipient, f.code]), [['x@example.com', 550], ['y@example.com', 450]]);
    assert.deepEqual(relay.groups.slice(1, 2), [['MAIL', 'RCPT', 'RCPT', 'DATA']]);
    assert.deepEqual(relay.bodies.map(String), [], 'no body after a refused DATA');
    assert.ok(relay.groups.slice(2).every((g) => g.every((c) => c === 'RSET' || c === 'QUIT')), `nothing but RSET/QUIT after the refusal: ${JSON.stringify(relay.groups)}`);
  } finally {
    await relay.close();
  }
});

test('PIPELINING offered, MAIL refused: the MAIL reply is the answer (not the 503s that follow), no body', async () => {
  const relay = await rawRelay({ pipelining: true, refuseMail: '550 5.7.1 sender refused' });
  try {
    const { failure } = await send(relay.port, ['ok@example.com']);
    assert.ok(failure);
    assert.equal(failure.reply?.code, 550);
    assert.equal(failure.reply?.enhanced, '5.7.1');
    assert.equal(failure.permanent, true);
    assert.deepEqual(relay.groups.slice(1, 2), [['MAIL', 'RCPT', 'DATA']]);
    assert.deepEqual(relay.bodies.map(String), []);
  } finally {
    await relay.close();
  }
});

test('PIPELINING offered: a refused message (5xx after the body) keeps its reply', async () => {
  const relay = await rawRelay({ pipelining: true, refuseMessage: '554 5.7.1 content refused' });
  try {
    const { failure } = await send(relay.port, ['ok@example.com']);
    assert.equal(failure?.reply?.code, 554);
    assert.equal(failure?.permanent, true);
    assert.deepEqual(relay.bodies.map(String), [`${message}.\r\n`]);
  } finally {
    await relay.close();
  }
});

async function refusedThenSent(relay: Scripted): Promise<SendOutcome[]> {
  const t = transport(relay.port);
  try {
    await assert.rejects(sendVia('r', t, { from: 'a@example.org', to: ['bad@example.com'] }, body()), (e: unknown) => e instanceof SendFailure && e.reply?.code === 550);
    const out: SendOutcome[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await sendVia('r', t, { from: 'a@example.org', to: ['ok@example.com'] }, body());
      assert.equal(r.kind, 'sent');
      if (r.kind === 'sent') out.push(r.outcome);
    }
    return out;
  } finally {
    t.close();
  }
}

test('PIPELINING not offered: lock-step, one command per reply, same per-recipient outcome', async () => {
  const relay = await rawRelay({ pipelining: false, refuseRcpt: { 'bad@example.com': '550 5.1.1 unknown user' } });
  try {
    const { outcome } = await send(relay.port, ['ok@example.com', 'bad@example.com']);
    assert.deepEqual(relay.groups.slice(1, 5), [['MAIL'], ['RCPT'], ['RCPT'], ['DATA']]);
    assert.deepEqual(outcome?.accepted, ['ok@example.com']);
    assert.deepEqual(outcome?.rejected.map((f) => [f.recipient, f.code]), [['bad@example.com', 550]]);
    assert.deepEqual(relay.bodies.map(String), [`${message}.\r\n`]);
  } finally {
    await relay.close();
  }
});

test('against smtp-server (offers PIPELINING): the envelope and DATA leave in one write, on a reused session too', async () => {
  const chunks: string[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onRcptTo(address, _s, cb) {
      if (address.address === 'bad@example.com') return cb(Object.assign(new Error('5.1.1 unknown user'), { responseCode: 550 }));
      cb();
    },
    onData(stream, _s, cb) {
      stream.resume();
      stream.on('end', () => cb(null, 'queued'));
    },
  });
  // A second 'data' listener only watches: smtp-server reads the same chunks.
  server.server.on('connection', (s: net.Socket) => s.on('data', (c: Buffer) => chunks.push(c.toString('latin1'))));
  const [port] = await freePorts(1);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const t = transport(port!);
  try {
    for (let i = 0; i < 2; i++) {
      const r = await sendVia('relay', t, { from: 'a@example.org', to: ['ok@example.com', 'bad@example.com'] }, body());
      assert.equal(r.kind, 'sent');
      if (r.kind === 'sent') {
        assert.deepEqual(r.outcome.accepted, ['ok@example.com']);
        assert.deepEqual(r.outcome.rejected.map((f) => f.code), [550]);
      }
    }
    const groups = chunks.filter((c) => c.startsWith('MAIL FROM'));
    assert.equal(groups.length, 2, `two transactions, each starting a write: ${JSON.stringify(chunks)}`);
    for (const g of groups) assert.match(g, /^MAIL FROM:<a@example\.org>[^\r]*\r\nRCPT TO:<ok@example\.com>\r\nRCPT TO:<bad@example\.com>\r\nDATA\r\n$/);
  } finally {
    t.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('against smtp-server: the body and its terminating dot leave in one write (in-memory bodies as the queues open them, 2 KB and 100 KB)', async () => {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream, _s, cb) {
      stream.resume();
      stream.on('end', () => cb(null, 'queued'));
    },
  });
  const [port] = await freePorts(1);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  // The client's real socket is observed, not replaced: every batch it hands the kernel
  // (_write for one chunk, _writev for a corked group), on connections to this server only.
  const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', (this: net.Socket, ...a: unknown[]) => unknown>;
  const write = proto._write;
  const writev = proto._writev;
  const writes: string[] = [];
  const text = (c: unknown): string => (Buffer.isBuffer(c) ? c.toString('latin1') : String(c));
  proto._write = function (...a: unknown[]) {
    if (this.remotePort === port) writes.push(text(a[0]));
    return write.apply(this, a);
  };
  proto._writev = function (...a: unknown[]) {
    if (this.remotePort === port) writes.push((a[0] as Array<{ chunk: unknown }>).map((c) => text(c.chunk)).join(''));
    return writev.apply(this, a);
  };
  const t = transport(port!);
  // Over the socket's 16 KiB high-water mark: the pipe waits for 'drain' after the chunk.
  const big = `Subject: big\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(100);
  try {
    for (let i = 0; i < 2; i++) {
      const r = await sendVia('relay', t, { from: 'a@example.org', to: ['ok@example.com'] }, body());
      assert.equal(r.kind, 'sent');
    }
    const r = await sendVia('relay', t, { from: 'a@example.org', to: ['ok@example.com'] }, async () => Readable.from([Buffer.from(big)]));
    assert.equal(r.kind, 'sent');
  } finally {
    proto._write = write;
    proto._writev = writev;
    t.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
  const afterData = writes.filter((w, i) => i > 0 && /DATA\r\n$/.test(writes[i - 1]!));
  assert.deepEqual(afterData, [`${message}.\r\n`, `${message}.\r\n`, `${big}.\r\n`], JSON.stringify(writes.map((w) => w.slice(0, 60))));
});
