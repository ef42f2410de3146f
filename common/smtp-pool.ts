/*
 * smtp-pool.ts — a pool of nodemailer SMTPConnection sessions to one relay.
 *
 * Why not nodemailer's pooled transport (`createTransport({pool: true})`): its
 * sendMail builds a MailMessage, a MimeNode tree, a Message-ID (from
 * crypto.randomBytes) and a stream pipeline for every message, even for raw
 * bytes with an explicit envelope. Measured against smtp-sink on this machine
 * (2026-11-25, 2 KB): 320–480 µs of CPU per message through sendMail, 80–90 µs
 * for the same transaction on SMTPConnection. A relay sends bytes that already
 * are a message; the session is all it needs, and SMTPConnection is
 * nodemailer's documented low-level client.
 *
 * What is kept from nodemailer's pool (smtp-pool/pool-resource.js):
 *   - at most `maxConnections` sessions; a session is closed after
 *     `maxMessages` messages;
 *   - AUTH when credentials are given and the server offers it;
 *   - a refused envelope or message (other than 421) resets the session with
 *     RSET and keeps it; any other failure closes it;
 *   - a reused session that turns out to be dead before a byte of the message
 *     was read (the server closed it while idle) is not a failure: the message
 *     goes out once more on a new session;
 *   - recipients are de-duplicated, as nodemailer's envelope handling did.
 *
 * DSN (RFC 3461) parameters are passed on per recipient: nodemailer's
 * SMTPConnection takes one NOTIFY and one ORCPT for every RCPT of a
 * transaction, so DsnConnection overrides its RCPT argument builder
 * (`_sendRcpt`, `_getDsnRcptToArgs`, nodemailer NODEMAILER_VERSION) to look them
 * up by recipient; RET and ENVID go on MAIL FROM as nodemailer writes them
 * (xtext-encoded, RFC 3461 4). Only to a server that offers DSN; SentInfo.dsn
 * says whether it did (the forwarder sends its own "relayed" notice otherwise).
 * test/common/smtp-pool-dsn.test.ts fails when an upgrade drops those methods.
 *
 * Writes per message (RFC 2920; a loopback write costs ~100-170 µs of CPU here,
 * and under TLS each write is also a record): nodemailer already corks MAIL,
 * every RCPT and DATA into one write when PIPELINING is offered. The body is
 * piped chunk by chunk into the socket and the terminating `.\r\n` is pushed
 * by DataStream's flush as a write of its own; DsnConnection overrides
 * `_createSendStream` (also nodemailer NODEMAILER_VERSION internals) to cork the
 * socket at each body chunk and uncork it on the next turn of the event loop
 * (setImmediate), so the last chunk and `.\r\n` (which follow within
 * microtasks when the body is in memory) leave in one write. The uncork is
 * by time, never by an event: a corked socket over its high-water mark makes
 * the pipe wait for 'drain', which it then gets a turn later (a body chunk over
 * that mark, e.g. 100 KB in memory, leaves the dot in DataStream's buffer: it
 * is read out into the same write when the stream's input is all in). A body
 * read from a file still ends in its own write (its end is seen a read later).
 *
 * Side effects: network connections.
 */
import type net from 'node:net';
import type { Readable, Transform } from 'node:stream';
import type tls from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { EnvelopeDsn } from './smtp-intake.js';

/** The nodemailer release whose internal RCPT methods DsnConnection overrides. */
export const NODEMAILER_VERSION = '10.6.1';
export const NODEMAILER_OVERRIDES = ['_sendRcpt', '_getDsnRcptToArgs', '_createSendStream'] as const;

/** nodemailer's internals this file relies on (not in its type declarations). */
interface ConnectionInternals {
  _sendRcpt(recipient: string, callback: unknown): void;
  _getDsnRcptToArgs(): string;
  _supportedExtensions: string[];
  _envelope: { postinoDsn?: EnvelopeDsn } | false;
  _createSendStream(callback: unknown): Transform;
  _socket: net.Socket | false | null;
}

/** RFC 3461 4: xtext, as nodemailer encodes it ("+" and "=" and anything outside 33-126 as +HH). */
function xtext(s: string): string {
  return s.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/gu, (c) => [...Buffer.from(c, 'utf8')].map((b) => `+${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

/** SMTPConnection with NOTIFY and ORCPT per recipient (see the header). */
class DsnConnection extends SMTPConnection {
  /** Whether the server's EHLO offered DSN (the parameters were passed on). */
  get offersDsn(): boolean {
    return (this as unknown as ConnectionInternals)._supportedExtensions.includes('DSN');
  }

  /** Set when the current transaction's body starts going out (after 354): a Buffer body cannot tell on its own. */
  bodyStarted = false;
}
const internals = DsnConnection.prototype as unknown as ConnectionInternals & { rcpt: string };
const baseSendRcpt = internals._sendRcpt;
internals._sendRcpt = function (this: ConnectionInternals & { rcpt: string }, recipient: string, callback: unknown): void {
  this.rcpt = recipient;
  baseSendRcpt.call(this, recipient, callback);
};
internals._getDsnRcptToArgs = function (this: ConnectionInternals & { rcpt: string }): string {
  const env = this._envelope;
  if (!env || !this._supportedExtensions.includes('DSN')) return '';
  const p = env.postinoDsn?.rcpt?.[this.rcpt];
  const args = [...(p?.notify ? [`NOTIFY=${p.notify.join(',')}`] : []), ...(p?.orcpt ? [`ORCPT=${xtext(p.orcpt)}`] : [])];
  return args.length ? ` ${args.join(' ')}` : '';
};
const baseCreateSendStream = internals._createSendStream;
internals._createSendStream = function (this: ConnectionInternals, callback: unknown): Transform {
  const dataStream = baseCreateSendStream.call(this, callback);
  (this as unknown as DsnConnection).bodyStarted = true;
  const socket = this._socket;
  if (!socket) return dataStream;
  let corked = false;
  // Prepended: it must run before the pipe's own 'data' listener writes the chunk.
  dataStream.prependListener('data', () => {
    if (corked) return;
    corked = true;
    socket.cork();
    setImmediate(() => {
      corked = false;
      // A chunk over the socket's high-water mark paused the pipe until 'drain': what the
      // stream ends with (the dot DataStream's flush pushed) waits in its buffer. Once the
      // stream's input is all in, hand that to the pipe now (read() emits it as 'data'),
      // into the same write.
      if (dataStream.writableFinished && dataStream.readableLength > 0 && dataStream.readableFlowing === false) dataStream.read();
      socket.uncork();
    });
  });
  return dataStream;
};

/**
 * A message body as a session takes it: a Buffer when the body is in memory
 * (written to the DATA stream at once), a stream otherwise (piped). Why both:
 * for a 2 KB spooled body the two stream layers around a Buffer
 * (Readable.from, and a generator that prepends a header) cost more of the
 * forwarder's main thread than the rest of the send (issue #17).
 */
export type BodySource = Readable | Buffer;

export interface SmtpPoolOptions {
  host: string;
  port: number;
  /** TLS from the first byte (smtps, port 465). */
  secure: boolean;
  /** STARTTLS must succeed, or the session fails with ETLS. */
  requireTls: boolean;
  /** Name we give in EHLO. */
  name: string;
  localAddress?: string | undefined;
  auth?: { user: string; pass: string } | undefined;
  maxConnections: number;
  maxMessages: number;
  timeoutMs: number;
  tls: tls.ConnectionOptions;
}

/** nodemailer's error shape: `code` (ECONNECTION, ETLS, EAUTH, EENVELOPE, EMESSAGE…) and the server's reply when there was one. */
export interface SmtpError extends Error {
  code?: string;
  response?: string;
  responseCode?: number;
  rejectedErrors?: Array<SmtpError & { recipient?: string }>;
}

export interface SentInfo {
  /** The server offered DSN, so the envelope's DSN parameters went with the transaction. */
  dsn: boolean;
  accepted: string[];
  rejected: string[];
  rejectedErrors?: SmtpError['rejectedErrors'];
  response: string;
}

interface Session {
  conn: DsnConnection;
  messages: number;
  dead: boolean;
}

export class SmtpPool {
  private readonly idle: Session[] = [];
  private open = 0;
  private readonly waiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly o: SmtpPoolOptions) {}

  /**
   * One transaction: MAIL, RCPT per recipient, DATA. Rejects with nodemailer's
   * error (see SmtpError). `openBody` is called per attempt: a stream that was
   * handed to a dead session cannot be handed to the next one.
   */
  async send(envelope: { from: string; to: string[]; dsn?: EnvelopeDsn | undefined }, openBody: () => Promise<BodySource>): Promise<SentInfo> {
    const d = envelope.dsn;
    // RET/ENVID through nodemailer's own envelope field; NOTIFY/ORCPT per recipient through DsnConnection.
    const mailDsn = d && (d.ret || d.envid) ? { dsn: { ...(d.ret ? { ret: d.ret } : {}), ...(d.envid ? { envid: d.envid } : {}) } } : {};
    const env = { from: envelope.from, to: [...new Set(envelope.to)], ...mailDsn, ...(d ? { postinoDsn: d } : {}) };
    for (let retried = false; ; retried = true) {
      const s = await this.acquire();
      const reused = s.messages > 0;
      let body: BodySource;
      try {
        body = await openBody();
      } catch (e) {
        this.release(s);
        throw e;
      }
      try {
        // A copy per attempt: nodemailer keeps its transaction state on the envelope object (its
        // stored MAIL error is never cleared), so a retry on the same object would fail with the last one's.
        s.conn.bodyStarted = false;
        const info = await new Promise<SentInfo>((resolve, reject) => s.conn.send({ ...env }, body, (err, info) => (err ? reject(err) : resolve({ ...(info as Omit<SentInfo, 'dsn'>), dsn: s.conn.offersDsn }))));
        s.messages++;
        this.release(s);
        return info;
      } catch (e) {
        s.messages++;
        const err = e as SmtpError;
        const unread = Buffer.isBuffer(body) ? !s.conn.bodyStarted : body.readableDidRead === false;
        if (!Buffer.isBuffer(body)) body.destroy();
        if (reused && !retried && unread && err.responseCode === undefined) {
          this.discard(s); // closed by the server while idle: not this message's fault
          continue;
        }
        if ((err.code === 'EENVELOPE' || err.code === 'EMESSAGE') && err.responseCode !== 421 && !s.conn.destroyed) {
          s.conn.reset((resetErr) => (resetErr ? this.discard(s) : this.release(s)));
        } else {
          this.discard(s);
        }
        throw err;
      }
    }
  }

  /**
   * Opens a fresh session (connect, greeting, EHLO, STARTTLS, AUTH: what a send
   * would need) to learn whether a relay that was unreachable takes mail again
   * (relay-health.ts). Rejects as a send would; on success the session is kept
   * for the next send when the pool has room.
   */
  async probe(): Promise<void> {
    if (this.closed) throw Object.assign(new Error('SMTP pool closed'), { code: 'ECONNECTION' });
    this.open++;
    let s: Session;
    try {
      s = await this.connect();
    } catch (e) {
      this.open--;
      this.waiters.shift()?.();
      throw e;
    }
    if (this.open > this.o.maxConnections) this.discard(s);
    else this.release(s);
  }

  /** Closes idle sessions now and busy ones when their transaction ends; later sends fail. */
  close(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) this.discard(s);
    for (const w of this.waiters.splice(0)) w();
  }

  private async acquire(): Promise<Session> {
    for (;;) {
      if (this.closed) throw Object.assign(new Error('SMTP pool closed'), { code: 'ECONNECTION' });
      const s = this.idle.pop();
      if (s) {
        if (!s.dead && !s.conn.destroyed) return s;
        this.discard(s);
        continue;
      }
      if (this.open < this.o.maxConnections) {
        this.open++;
        try {
          return await this.connect();
        } catch (e) {
          this.open--;
          this.waiters.shift()?.();
          throw e;
        }
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  private release(s: Session): void {
    if (this.closed || s.dead || s.conn.destroyed || s.messages >= this.o.maxMessages) return this.discard(s);
    this.idle.push(s);
    this.waiters.shift()?.();
  }

  private discard(s: Session): void {
    if (!s.dead) {
      s.dead = true;
      this.open--;
      const i = this.idle.indexOf(s);
      if (i >= 0) this.idle.splice(i, 1);
      if (s.conn.destroyed) s.conn.close();
      else s.conn.quit();
      this.waiters.shift()?.();
    }
  }

  private async connect(): Promise<Session> {
    const o = this.o;
    const conn = new DsnConnection({
      host: o.host,
      port: o.port,
      secure: o.secure,
      requireTLS: !o.secure && o.requireTls,
      name: o.name,
      localAddress: o.localAddress,
      connectionTimeout: o.timeoutMs,
      greetingTimeout: o.timeoutMs,
      socketTimeout: o.timeoutMs,
      tls: o.tls,
      logger: false,
    });
    const s: Session = { conn, messages: 0, dead: false };
    // A session in use hears of its errors through the transaction's callback; this
    // listener drops an idle one (timeout, reset) and keeps 'error' from going unhandled.
    const dropIfIdle = (): void => {
      if (this.idle.includes(s)) this.discard(s);
    };
    conn.on('error', dropIfIdle);
    conn.once('end', dropIfIdle);
    try {
      await new Promise<void>((resolve, reject) => {
        conn.once('error', reject);
        conn.once('end', () => reject(Object.assign(new Error('Connection closed before the SMTP session started'), { code: 'ECONNECTION' })));
        conn.connect((err) => (err ? reject(err) : resolve()));
      });
      if (o.auth && conn.allowsAuth) {
        await new Promise<void>((resolve, reject) => conn.login({ user: o.auth!.user, pass: o.auth!.pass }, (err) => (err ? reject(err) : resolve())));
      }
    } catch (e) {
      s.dead = true; // open is given back by acquire()
      conn.close();
      throw e;
    }
    return s;
  }
}
