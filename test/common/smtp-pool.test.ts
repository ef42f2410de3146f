/*
 * smtp-pool.ts against a real SMTP server (smtp-server, started here): session
 * reuse and its limits, RSET after a refused envelope, the retry when the
 * server closed an idle session, de-duplicated recipients, and errors that
 * keep nodemailer's codes; with PIPELINING, the next transaction behind the
 * dot (and a scripted server that records each read).
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { sendVia } from '../../common/smtp-client.js';
import { SmtpPool, type SmtpError, type SmtpPoolOptions } from '../../common/smtp-pool.js';
import { freePorts } from '../helpers/ports.js';
import { scriptedSmtp } from '../helpers/scripted-smtp.js';

interface Upstream {
  port: number;
  sessions: Set<string>;
  /** Messages received per session id. */
  perSession: Map<string, number>;
  maxConcurrent: number;
  rcpts: string[][];
  /** Each message as the server's parser delivered it (dots unstuffed). */
  bodies: Buffer[];
  commands: string[];
  dropIdle(): void;
  close(): Promise<void>;
}

interface UpstreamOptions {
  refuse?: string[];
  delayMs?: number;
  /** The session that received the server's Nth message (counted from 1) is cut off before its reply. */
  killAtMessage?: number;
  /** Called when a body's final dot has arrived, before its reply. */
  onReceived?: () => void;
  /** The reply to a body waits for this too. */
  holdReply?: Promise<void>;
}

async function upstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const sessions = new Set<string>();
  const perSession = new Map<string, number>();
  const rcpts: string[][] = [];
  const bodies: Buffer[] = [];
  const commands: string[] = [];
  const sockets = new Set<import('node:net').Socket>();
  let concurrent = 0;
  let received = 0;
  const u: Upstream = {
    port: 0,
    sessions,
    perSession,
    maxConcurrent: 0,
    rcpts,
    bodies,
    commands,
    dropIdle: () => {
      for (const s of sockets) s.destroy();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onConnect(session: SMTPServerSession, cb) {
      sessions.add(session.id);
      u.maxConcurrent = Math.max(u.maxConcurrent, ++concurrent);
      cb();
    },
    onClose() {
      concurrent--;
    },
    onMailFrom(address, _s, cb) {
      commands.push(`MAIL ${address.address}`);
      cb();
    },
    onRcptTo(address, _s, cb) {
      if (opts.refuse?.includes(address.address)) return cb(Object.assign(new Error('5.1.1 unknown user'), { responseCode: 550 }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        bodies.push(Buffer.concat(chunks));
        perSession.set(session.id, (perSession.get(session.id) ?? 0) + 1);
        rcpts.push(session.envelope.rcptTo.map((r) => r.address));
        if (++received === opts.killAtMessage) return u.dropIdle();
        opts.onReceived?.();
        const reply = (): void => void setTimeout(() => cb(null, 'queued'), opts.delayMs ?? 0);
        if (opts.holdReply) void opts.holdReply.then(reply);
        else reply();
      });
    },
  });
  server.server.on('connection', (s: import('node:net').Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const [port] = await freePorts(1);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  u.port = port!;
  return u;
}

function pool(port: number, o: Partial<SmtpPoolOptions> = {}): SmtpPool {
  return new SmtpPool({ host: '127.0.0.1', port, secure: false, requireTls: false, name: 'pool.test', maxConnections: 2, maxMessages: 100, timeoutMs: 5_000, tls: {}, ...o });
}

const MESSAGE = 'Subject: t\r\n\r\nhello\r\n';
const body = (): (() => Promise<Readable>) => async () => Readable.from([Buffer.from(MESSAGE)]);
/** The same body as the Buffer an inline spooled body is handed over as (durable-queue.ts sendableBody). */
const bufferBody = (): (() => Promise<Buffer>) => async () => Buffer.from(MESSAGE);
/** The same body in pieces, as a stamped or handed-over inline body is (spool-id.ts, durable-queue.ts sendableBody). */
const piecesBody = (): (() => Promise<Buffer[]>) => async () => [Buffer.from(MESSAGE.slice(0, 12)), Buffer.from(MESSAGE.slice(12))];
const env = { from: 'a@example.org', to: ['b@example.com'] };

test('sessions are reused up to maxMessages, and never more than maxConnections run at once', async () => {
  const up = await upstream({ delayMs: 20 });
  const p = pool(up.port, { maxConnections: 2, maxMessages: 3 });
  try {
    const infos = await Promise.all(Array.from({ length: 12 }, () => p.send(env, body())));
    assert.ok(infos.every((i) => i.accepted[0] === 'b@example.com' && /^250/.test(i.response)));
    assert.equal(up.rcpts.length, 12);
    assert.equal(up.maxConcurrent, 2, 'at most two sessions at once');
    // Reuse up to the limit, never past it: 3 per session makes 4 sessions. A session the pool
    // drops early (its connection failed while idle, on a loaded machine) costs one more, not more.
    const counts = [...up.perSession.values()];
    assert.ok(counts.every((n) => n <= 3), `never more than maxMessages per session: ${counts.join(', ')}`);
    assert.ok(up.sessions.size >= 4 && up.sessions.size <= 5 && counts.filter((n) => n === 3).length >= 3, `sessions reused up to 3 messages: ${counts.join(', ')}`);
  } finally {
    p.close();
    await up.close();
  }
});

test('a refused envelope keeps the session (RSET); recipients are de-duplicated', async () => {
  const up = await upstream({ refuse: ['bad@example.com'] });
  const p = pool(up.port, { maxConnections: 1 });
  try {
    await assert.rejects(p.send({ from: 'a@example.org', to: ['bad@example.com'] }, body()), (e: SmtpError) => e.code === 'EENVELOPE' && e.responseCode === 550 && e.rejectedErrors?.length === 1);
    const info = await p.send({ from: '', to: ['b@example.com', 'b@example.com', 'bad@example.com'] }, body());
    assert.deepEqual(info.accepted, ['b@example.com']);
    assert.deepEqual(info.rejected, ['bad@example.com']);
    assert.deepEqual(up.rcpts, [['b@example.com']], 'one RCPT for the duplicate address');
    assert.deepEqual(up.commands, ['MAIL a@example.org', 'MAIL '], 'the null sender is sent as MAIL FROM:<>');
    assert.equal(up.sessions.size, 1, 'the same session after the refusal');
  } finally {
    p.close();
    await up.close();
  }
});

for (const [kind, open] of [
  ['stream', body],
  ['Buffer', bufferBody],
  ['pieces', piecesBody],
] as const) {
  test(`a session the server dropped while idle is replaced without failing the message (${kind} body)`, async () => {
    const up = await upstream();
    const p = pool(up.port, { maxConnections: 1 });
    try {
      await p.send(env, open());
      up.dropIdle();
      await new Promise((r) => setTimeout(r, 100));
      await p.send(env, open());
      up.dropIdle();
      await p.send(env, open()); // dropped without time for the pool to notice
      assert.equal(up.rcpts.length, 3);
      assert.equal(up.sessions.size, 3);
    } finally {
      p.close();
      await up.close();
    }
  });

  test(`a reused session lost after the body went out fails the message, never sends it twice (${kind} body)`, async () => {
    // The server may have taken it (RFC 5321 6.1): the caller's retry schedule decides, with its
    // duplicate guard (spool-id.ts), not a silent second transaction here.
    const up = await upstream({ killAtMessage: 2 });
    const p = pool(up.port, { maxConnections: 1 });
    try {
      await p.send(env, open());
      await assert.rejects(p.send(env, open()), (e: SmtpError) => e.responseCode === undefined);
      assert.equal(up.rcpts.length, 2, 'the second message reached the server once');
      await p.send(env, open());
      assert.equal(up.rcpts.length, 3, 'the pool goes on with a new session');
    } finally {
      p.close();
      await up.close();
    }
  });

  test(`PIPELINING: a session lost after a dot fails that message; the one behind it goes out once on a new session (${kind} body)`, async () => {
    const up = await upstream({ killAtMessage: 1 });
    const p = pool(up.port, { maxConnections: 1 });
    try {
      const [first, second] = await Promise.allSettled([p.send(env, open()), p.send(env, open())]);
      assert.equal(first.status, 'rejected');
      assert.equal((first as PromiseRejectedResult).reason.responseCode, undefined, 'no reply: the outcome is unknown, the caller retries');
      assert.equal(second.status, 'fulfilled', 'its body never went out: sent again at once');
      assert.equal(up.rcpts.length, 2, 'each message reached the server once');
      assert.equal(up.sessions.size, 2);
    } finally {
      p.close();
      await up.close();
    }
  });
}

test('nobody listening: the error carries a connection code and no reply; a closed pool refuses', async () => {
  const [port] = await freePorts(1);
  const p = pool(port!);
  await assert.rejects(p.send(env, body()), (e: SmtpError) => e.responseCode === undefined && typeof e.code === 'string');
  p.close();
  await assert.rejects(p.send(env, body()), /pool closed/);
});

test('a body that cannot be read is our error, not an unreachable relay; the session stays usable', async () => {
  const up = await upstream();
  const p = pool(up.port, { maxConnections: 1 });
  try {
    await p.send(env, body());
    const missing = Object.assign(new Error('body of X is missing'), { code: 'ENOENT' });
    await assert.rejects(sendVia('smtp://up', p, env, () => Promise.reject(missing)), (e) => e === missing);
    const r = await sendVia('smtp://up', p, env, body());
    assert.equal(r.kind, 'sent');
    assert.equal(up.rcpts.length, 2);
    assert.equal(up.sessions.size, 1);
  } finally {
    p.close();
    await up.close();
  }
});

test('PIPELINING: the next transaction goes out behind the dot, in the same write, before its reply', async () => {
  const up = await scriptedSmtp();
  const p = pool(up.port, { maxConnections: 1 });
  try {
    const infos = await Promise.all(Array.from({ length: 4 }, () => p.send(env, bufferBody())));
    assert.ok(infos.every((i) => /^250/.test(i.response)));
    assert.equal(up.connections, 1);
    assert.equal(up.bodies.length, 4);
    const behind = up.reads.filter((r) => r.includes('hello\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n'));
    assert.equal(behind.length, 3, `each next envelope in the read of the dot before it: ${JSON.stringify(up.reads)}`);
    assert.ok(!up.lines.includes('RSET'));
  } finally {
    p.close();
    await up.close();
  }
});

test('PIPELINING: a refused message does not fail the one behind it, and needs no RSET', async () => {
  const up = await scriptedSmtp({ final: (n) => (n === 0 ? '554 5.7.1 refused by policy' : '250 2.0.0 Ok: queued') });
  const p = pool(up.port, { maxConnections: 1 });
  try {
    const [first, second] = await Promise.allSettled([p.send(env, bufferBody()), p.send(env, bufferBody())]);
    assert.equal(first.status, 'rejected');
    assert.equal((first as PromiseRejectedResult).reason.code, 'EMESSAGE');
    assert.equal((first as PromiseRejectedResult).reason.responseCode, 554);
    assert.equal(second.status, 'fulfilled');
    assert.match((second as PromiseFulfilledResult<{ response: string }>).value.response, /^250/);
    assert.ok(!up.lines.includes('RSET'), 'the server was between transactions after the 554');
    assert.equal(up.connections, 1);
    await p.send(env, bufferBody());
    assert.equal(up.bodies.length, 3);
  } finally {
    p.close();
    await up.close();
  }
});

test('PIPELINING: closing the pool while a handed-off transaction waits for its reply lets the reply reach it', async () => {
  // close() comes after the server has the dot (so the transaction was handed off) and before its reply.
  let arrived!: () => void;
  const dotArrived = new Promise<void>((r) => (arrived = r));
  let releaseReply!: () => void;
  const up = await upstream({ onReceived: () => arrived(), holdReply: new Promise<void>((r) => (releaseReply = r)) });
  const p = pool(up.port, { maxConnections: 1 });
  try {
    const sent = p.send(env, bufferBody());
    await dotArrived;
    p.close();
    releaseReply();
    const info = await sent;
    assert.match(info.response, /^250/);
    assert.equal(up.rcpts.length, 1);
  } finally {
    await up.close();
  }
});

test('a body in pieces goes out as their concatenation, dot-stuffed across the pieces\' ends', async () => {
  const up = await upstream();
  const p = pool(up.port, { maxConnections: 1 });
  // A line starting with a dot at the start of a piece, a dot in mid-line at the start of one, a
  // CRLF split over two pieces before a dot, and a lone dot line.
  const pieces = ['Subject: t\r\n\r\n', '.first\r\nmid', '.dle\r\nx\r', '\n.', 'second\r\n', '.\r\n', 'end'].map((x) => Buffer.from(x));
  try {
    await p.send(env, async () => pieces);
    assert.deepEqual(up.bodies[0]?.toString(), `${Buffer.concat(pieces).toString()}\r\n`, 'byte for byte (the session ends an unterminated last line)');
  } finally {
    p.close();
    await up.close();
  }
});
