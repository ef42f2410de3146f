/*
 * Reply batching in PostinoSMTPServer (common/smtp-server.ts): the replies to
 * commands a client pipelined (RFC 2920) leave in one socket write; a
 * lock-step client gets each reply at once; a handler that calls back late in
 * the middle of a group holds nothing back for ever; STARTTLS, QUIT and the
 * error budget's 421 still reach the client. After QUIT's 221 the server closes
 * at once (Postfix's smtpd does), without waiting for the client to close first.
 *
 *
 * A raw client stands for the SMTP client so the test controls how commands
 * are grouped into writes. The server's accepted socket is observed (its
 * _write/_writev calls: one per batch handed to the kernel), not replaced.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import tls from 'node:tls';
import { PostinoSMTPServer } from '../../common/smtp-server.js';

interface Observed {
  /** Writes the server's raw socket handed to the kernel since the last reset. */
  writes: number;
  /** When the server's socket for the last connection closed (its descriptor released). */
  closedAt?: number;
}

/** slow@ recipients are answered after 200 ms (a handler awaiting storage). */
async function startServer(gate?: { maxErrors: number }): Promise<{ port: number; server: PostinoSMTPServer; observed: Observed }> {
  const observed: Observed = { writes: 0 };
  const server = new PostinoSMTPServer(
    {
      logger: false,
      authOptional: true,
      disabledCommands: ['AUTH'],
      disableReverseLookup: true,
      onRcptTo(address, _session, cb) {
        if (address.address.startsWith('slow@')) setTimeout(() => cb(), 200);
        else if (address.address.startsWith('refused@')) cb(Object.assign(new Error('5.1.1 No such user'), { responseCode: 550 }));
        else cb();
      },
      onData(stream, _session, cb) {
        stream.resume();
        stream.on('end', () => cb(null, 'queued'));
      },
    },
    { greetingDelayMs: 0, trustedNetworks: [] },
    gate ? { maxConnections: 0, maxConnectionsPerIp: 0, sessionMs: 0, maxErrors: gate.maxErrors, proxyFrom: [] } : undefined,
  );
  server.server.prependListener('connection', (sock: net.Socket) => {
    const s = sock as net.Socket & { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
    const write = s._write;
    const writev = s._writev;
    s.once('close', () => (observed.closedAt = Date.now()));
    s._write = function (...a: unknown[]) {
      observed.writes++;
      return write.apply(this, a);
    };
    s._writev = function (...a: unknown[]) {
      observed.writes++;
      return writev.apply(this, a);
    };
  });
  const port = await server.listenAsync(0, '127.0.0.1');
  return { port, server, observed };
}

/** A client that keeps every read ('data' event) apart. */
class Client {
  reads: string[] = [];
  closed = false;
  /** The server's FIN arrived (an orderly close, not a reset). */
  ended = false;
  /** A socket error's code (ECONNRESET: the server reset the connection). */
  error: string | undefined;
  private waiters: Array<() => void> = [];
  constructor(public socket: net.Socket) {
    this.listen(socket);
  }
  private listen(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.reads.push(d);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      this.error = e.code ?? e.message;
    });
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  /** allowHalfOpen: the client does not close its side when the server's FIN arrives (as a slow or careless client would not). */
  static connect(port: number, allowHalfOpen = false): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }
  get text(): string {
    return this.reads.join('');
  }
  /** Reply lines ending a reply ("250 ...", not "250-..."), in order. */
  get replies(): string[] {
    return this.text.split('\r\n').filter((l) => /^\d{3} /.test(l));
  }
  /** Waits until `n` replies (or the close) arrived; rejects after 10 s. */
  async until(n: number, orClose = false): Promise<void> {
    const until = Date.now() + 10_000;
    while (this.replies.length < n && !(orClose && this.closed)) {
      if (this.closed) throw new Error(`closed after ${JSON.stringify(this.text)}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`${n} replies not in within 10 s: ${JSON.stringify(this.text)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => (clearTimeout(t), r()));
      });
    }
  }
  reset(): void {
    this.reads = [];
  }
  /** Replaces the socket with TLS on top of it (after a 220 to STARTTLS). */
  async startTls(): Promise<void> {
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    this.socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: raw, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.reads = [];
    this.listen(this.socket);
  }
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100));
const GROUP = 'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n';

async function greeted(port: number, allowHalfOpen = false): Promise<Client> {
  const c = await Client.connect(port, allowHalfOpen);
  await c.until(1);
  c.socket.write('EHLO client.test\r\n');
  await c.until(2);
  c.reset();
  return c;
}

test('replies to a pipelined MAIL, RCPT, RCPT, DATA leave in one write and arrive in one read', async () => {
  const { port, server, observed } = await startServer();
  const c = await greeted(port);
  try {
    observed.writes = 0;
    c.socket.write(GROUP);
    await c.until(4);
    await settle();
    assert.deepEqual(
      c.replies.map((l) => l.slice(0, 3)),
      ['250', '250', '250', '354'],
    );
    assert.equal(observed.writes, 1, 'one socket write for the group');
    assert.equal(c.reads.length, 1, 'one read on the client');
    c.reset();
    c.socket.write('Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n');
    await c.until(2);
    assert.deepEqual(c.replies, ['250 queued', '221 Bye']);
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('a lock-step client gets each reply on its own, without waiting for its next command', async () => {
  const { port, server, observed } = await startServer();
  const c = await greeted(port);
  try {
    observed.writes = 0;
    const lines = ['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.org>', 'RCPT TO:<refused@example.org>', 'DATA'];
    for (const [i, line] of lines.entries()) {
      c.socket.write(`${line}\r\n`);
      await c.until(i + 1);
    }
    assert.deepEqual(
      c.replies.map((l) => l.slice(0, 3)),
      ['250', '250', '550', '354'],
    );
    assert.equal(observed.writes, 4);
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('a recipient answered 200 ms late in the middle of a group: every reply arrives, refusals per recipient, one write', async () => {
  const { port, server, observed } = await startServer();
  const c = await greeted(port);
  try {
    observed.writes = 0;
    c.socket.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<slow@example.org>\r\nRCPT TO:<refused@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n');
    await c.until(5);
    await settle();
    assert.deepEqual(
      c.replies.map((l) => l.slice(0, 3)),
      ['250', '250', '550', '250', '354'],
    );
    assert.equal(observed.writes, 1);
    c.reset();
    c.socket.write('x\r\n.\r\n');
    await c.until(1);
    assert.equal(c.replies[0], '250 queued');
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('over the error budget in one pipelined chunk: the 500s and the 421 arrive, the connection closes, nothing after is answered', async () => {
  const { port, server } = await startServer({ maxErrors: 2 });
  const c = await greeted(port);
  try {
    c.socket.write('FOO\r\nFOO\r\nFOO\r\nNOOP\r\n');
    await c.until(99, true);
    assert.deepEqual(
      c.replies.map((l) => l.slice(0, 3)),
      ['500', '500', '500', '421'],
    );
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('EHLO and STARTTLS pipelined: both replies in clear before the handshake, then a pipelined group in one TLS read', async () => {
  const { port, server } = await startServer();
  const c = await Client.connect(port);
  try {
    await c.until(1);
    c.reset();
    c.socket.write('EHLO client.test\r\nSTARTTLS\r\n');
    await c.until(2);
    assert.match(c.replies[1]!, /^220 /);
    await c.startTls();
    c.socket.write('EHLO client.test\r\n');
    await c.until(1);
    c.reset();
    c.socket.write(GROUP);
    await c.until(4);
    await settle();
    assert.deepEqual(
      c.replies.map((l) => l.slice(0, 3)),
      ['250', '250', '250', '354'],
    );
    assert.equal(c.reads.length, 1, 'one TLS record, one read');
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

/** smtp-server's own wait for the client's FIN after a close (HALF_CLOSE_TIMEOUT). */
const HALF_CLOSE_MS = 5_000;

/** Waits until the server's socket closed; how long after t0. */
async function serverClosed(observed: Observed, t0: number): Promise<number> {
  while (observed.closedAt === undefined && Date.now() - t0 < 2 * HALF_CLOSE_MS) await new Promise((r) => setTimeout(r, 20));
  assert.ok(observed.closedAt !== undefined, 'the server never closed its socket');
  return observed.closedAt - t0;
}

/** Writes `input` (ending in QUIT); the server must answer `replies` and close at once, in order (FIN, not a reset). */
async function quitClosesAtOnce(c: Client, observed: Observed, input: string, replies: string[]): Promise<void> {
  c.reset();
  const t0 = Date.now();
  c.socket.write(input);
  const ms = await serverClosed(observed, t0);
  await c.until(replies.length);
  assert.deepEqual(c.replies, replies);
  assert.ok(c.ended && c.error === undefined, `an orderly close (FIN), not a reset: ${c.error}`);
  assert.ok(ms < HALF_CLOSE_MS / 2, `the server closed ${ms} ms after QUIT`);
}

// The client keeps its side open (allowHalfOpen): only the server's own close ends the connection.
test('after QUIT the server sends 221 and closes at once, without waiting for the client to close its side', async () => {
  const { port, server, observed } = await startServer();
  const c = await greeted(port, true);
  try {
    await quitClosesAtOnce(c, observed, 'QUIT\r\n', ['221 Bye']);
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('a message with QUIT pipelined behind its dot: 250 and 221 arrive, then the server closes at once', async () => {
  const { port, server, observed } = await startServer();
  const c = await greeted(port, true);
  try {
    c.socket.write(GROUP);
    await c.until(4);
    await quitClosesAtOnce(c, observed, 'Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n', ['250 queued', '221 Bye']);
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('QUIT inside a TLS session: 221 arrives over TLS and the server closes at once', async () => {
  const { port, server, observed } = await startServer();
  const c = await Client.connect(port, true);
  try {
    await c.until(1);
    c.socket.write('EHLO client.test\r\nSTARTTLS\r\n');
    await c.until(3);
    await c.startTls();
    c.socket.write('EHLO client.test\r\n');
    await c.until(1);
    // After STARTTLS the session runs on a TLSSocket that took the raw socket's handle: watch that one.
    observed.closedAt = undefined;
    for (const conn of server.connections) (conn as unknown as { _socket: tls.TLSSocket })._socket.once('close', () => (observed.closedAt = Date.now()));
    await quitClosesAtOnce(c, observed, 'QUIT\r\n', ['221 Bye']);
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});

test('the error budget\'s 421 keeps the half-closed wait: a client still sending can read it before the server closes', async () => {
  const { port, server, observed } = await startServer({ maxErrors: 1 });
  const c = await greeted(port, true);
  try {
    const t0 = Date.now();
    c.socket.write('FOO\r\nFOO\r\n');
    await c.until(2);
    assert.deepEqual(
      c.replies.map((l) => l.slice(0, 3)),
      ['500', '500', '421'],
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(observed.closedAt, undefined, 'no close over input the client may still be sending');
    const ms = await serverClosed(observed, t0);
    assert.ok(ms >= HALF_CLOSE_MS - 500, `closed after ${ms} ms`);
  } finally {
    c.socket.destroy();
    await server.closeAsync();
  }
});
