/*
 * smtp-session.ts — one client SMTP session: connect (or TLS from the first
 * byte), greeting, EHLO (HELO when EHLO is refused), STARTTLS, AUTH, then
 * transactions until the pool (smtp-pool.ts) closes it.
 *
 * Why our own and not nodemailer's SMTPConnection (issue #17): a relay sends
 * bytes that already are a message over sessions it keeps open, so the
 * transaction is all that runs per message, and that is where nodemailer's
 * generality costs. Measured against smtp-sink on this 2-core VM (20 sessions,
 * 2 KB, 20,000 messages, process CPU per message, 2026-12-01): SmtpPool on
 * nodemailer 62-71 µs (with dot-stuffing.ts's fast check), this session 37-40
 * µs, a bare client writing the same two writes per message 26-28 µs (README,
 * "eleventh round"). The session also carries what the
 * pool had to override nodemailer's private methods for (NOTIFY and ORCPT per
 * recipient, the body and its final dot in one write).
 *
 * Standards: RFC 5321 (client side), RFC 2920 (PIPELINING: MAIL, every RCPT
 * and DATA in one write when offered; and the next transaction's MAIL, RCPT and
 * DATA in the write of the previous one's body and dot, when the pool has one
 * waiting: see TransactionState.handOff), RFC 3207 (STARTTLS), RFC 4954 (AUTH
 * PLAIN and LOGIN), RFC 3461 (RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT,
 * xtext), RFC 6531 (SMTPUTF8 on MAIL when an address is not ASCII and the
 * server offers it).
 *
 * Errors keep the shape smtp-client.ts classifies (and nodemailer had):
 * `code` ECONNECTION (refused, reset, closed), ETIMEDOUT (no progress within
 * timeoutMs), EPROTOCOL (a greeting or HELO refused, a reply that is not
 * SMTP), ETLS (STARTTLS refused or failed), EAUTH, EENVELOPE (MAIL, every RCPT
 * or DATA refused), EMESSAGE (the reply to the final dot); `response` and
 * `responseCode` when the server answered; `rejectedErrors` per recipient.
 *
 * Hostile servers (the engine delivers to any MX): a reply is capped at
 * MAX_REPLY_BYTES and a line without CRLF counts towards it, so a server
 * cannot make us buffer without bound; every step has the session timeout.
 *
 * Side effects: one network connection.
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import tls from 'node:tls';
import { endOfData, stuffChunkAt } from './dot-stuffing.js';
import { nextTurn } from './next-turn.js';
import type { EnvelopeDsn } from './smtp-intake.js';

/**
 * A body in memory is stuffed this much at a time, with a turn of the event loop after each
 * slice that needed changes: stuffing costs ~20 ns a byte when every line starts with a dot
 * (dot-stuffing.ts), 40-50 ms for a 2 MB body of them in one piece, and several times that
 * before the loop is optimized, which a process that rarely stuffs never gets to (256 KiB slices
 * still measured 58-83 ms in a CPU profile of the first such message). Issue #11's responsiveness;
 * the clean slices of ordinary mail only pass the SIMD check and go on without a turn.
 */
const STUFF_SLICE = 64 * 1024;

/** Idle time before TCP keepalive probes: keeps NAT mappings of pooled idle sessions alive (nodemailer's value). */
const KEEPALIVE_MS = 30_000;
/** Replies longer than this (all lines together) end the session: no SMTP reply needs more (RFC 5321 4.5.3.1.5 caps a line at 512). */
const MAX_REPLY_BYTES = 64 * 1024;

/**
 * A message body as a session takes it: in memory, a Buffer or the Buffers it
 * is made of, in order (written at once); a stream otherwise (read as the
 * socket takes it). Why both: for a 2 KB spooled body the two stream layers
 * around a Buffer (Readable.from, and a generator that prepends a header) cost
 * more of the forwarder's main thread than the rest of the send. Why pieces:
 * a body made of parts (a header line and the spooled body, a new header block
 * and the intake's bytes) goes out without first being copied into one Buffer,
 * a copy and an allocation of the whole body per message (issue #17).
 */
export type BodySource = Readable | Buffer | readonly Buffer[];

/** An in-memory body as its pieces, in order; undefined for a stream. */
export function bodyPieces(body: BodySource): readonly Buffer[] | undefined {
  if (Buffer.isBuffer(body)) return [body];
  return Array.isArray(body) ? (body as readonly Buffer[]) : undefined;
}

export interface SessionOptions {
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
  timeoutMs: number;
  tls: tls.ConnectionOptions;
}

/** The error shape of smtp-client.ts: `code`, and the server's reply when there was one. */
export interface SmtpError extends Error {
  code?: string;
  response?: string;
  responseCode?: number;
  rejectedErrors?: Array<SmtpError & { recipient?: string }>;
}

export interface TransactionInfo {
  accepted: string[];
  rejected: string[];
  rejectedErrors?: SmtpError['rejectedErrors'];
  response: string;
}

export interface TransactionEnvelope {
  from: string;
  /** De-duplicated by the caller. */
  to: string[];
  dsn?: EnvelopeDsn | undefined;
  /**
   * The body's bytes from this offset on have nothing to dot-stuff, each with the byte before it
   * in the body (a copy that sends the listener's checked bytes after its own header:
   * DeliveryMeta.cleanFrom): only the byte at the offset is judged here (dot-stuffing.ts stuffChunkAt).
   */
  cleanFrom?: number | undefined;
}

/** One transaction as the pool follows it (smtp-pool.ts). */
export interface TransactionState {
  /** Set when the body starts going out (after 354). */
  bodyStarted: boolean;
  /**
   * Called once the final dot is written, before its reply, when the server offers
   * PIPELINING. True: the pool has handed the session to the next transaction already,
   * whose commands may go out behind the dot in the same write (RFC 2920 3.1: message
   * content may start a group, MAIL and RCPT may appear anywhere in one); the socket
   * stays corked until the end of the event loop's turn to let them join it.
   */
  handOff?: () => boolean;
}

interface Reply {
  code: number;
  /** All lines, CRLF-less, joined by "\n" (as nodemailer reported them). */
  text: string;
}

function smtpError(message: string, code: string, reply?: Reply): SmtpError {
  const e: SmtpError = Object.assign(new Error(reply ? `${message}: ${reply.text}` : message), { code });
  if (reply) {
    e.response = reply.text;
    e.responseCode = reply.code;
  }
  return e;
}

/** RFC 3461 4: xtext ("+", "=" and anything outside 33-126 as +HH). */
function xtext(s: string): string {
  return s.replace(/[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/gu, (c) => [...Buffer.from(c, 'utf8')].map((b) => `+${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

const NON_ASCII = /[^\x00-\x7f]/u;
/** A CR, LF or angle bracket in an address would end or break the command line: refused before anything is written. */
const BREAKS_COMMAND = /[\r\n<>]/u;

/** What ends the session from outside a transaction (the pool drops the idle session). */
export type LossListener = (err: SmtpError) => void;

export class SmtpSession {
  private socket: net.Socket;
  private readonly waiters: Array<{ resolve: (r: Reply) => void; reject: (e: SmtpError) => void }> = [];
  /** A partial reply: its lines so far and the bytes of a line without its CRLF yet. */
  private lines: string[] = [];
  private linesBytes = 0;
  private partial = '';
  private failure: SmtpError | undefined;
  private extensions = new Set<string>();
  private authMechanisms = new Set<string>();
  private onLoss: LossListener | undefined;
  /** Stops a body waiting for 'drain' when the session fails under it. */
  private bodyAbort: ((err: SmtpError) => void) | undefined;
  /** QUIT is written behind a transaction still waiting for its reply (see quit()). */
  private quitting = false;

  private constructor(
    socket: net.Socket,
    private readonly o: SessionOptions,
  ) {
    this.socket = socket;
    this.attach(socket);
  }

  /** Connects and runs greeting, EHLO, STARTTLS and AUTH; rejects with an SmtpError and leaves nothing open. */
  static async open(o: SessionOptions): Promise<SmtpSession> {
    const servername = o.tls.servername ?? (net.isIP(o.host) ? undefined : o.host);
    const socket = o.secure
      ? tls.connect({ ...o.tls, host: o.host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}), ...(servername ? { servername } : {}) })
      : net.connect({ host: o.host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
    const s = new SmtpSession(socket, o);
    // Asked for before the connection completes: the greeting may come in the read that ends the TLS handshake.
    const greetingReply = s.next();
    greetingReply.catch(() => undefined);
    try {
      await s.connected(o.secure ? 'secureConnect' : 'connect');
      const greeting = await greetingReply;
      if (greeting.code !== 220) throw smtpError('Invalid greeting', 'EPROTOCOL', greeting);
      await s.hello();
      if (!o.secure && (s.extensions.has('STARTTLS') || o.requireTls)) {
        const r = await s.command('STARTTLS');
        if (r.code !== 220) throw smtpError('STARTTLS refused', 'ETLS', r);
        await s.upgrade(servername);
        await s.hello();
      }
      if (o.auth && s.extensions.has('AUTH')) await s.login(o.auth);
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  get offersDsn(): boolean {
    return this.extensions.has('DSN');
  }

  /** The server closed it, it failed, or we closed it. */
  get destroyed(): boolean {
    return this.failure !== undefined || this.quitting || this.socket.destroyed;
  }

  /** Called once when the session ends while no transaction waits for a reply. */
  whenLost(listener: LossListener): void {
    this.onLoss = listener;
  }

  /**
   * One transaction: MAIL, RCPT per recipient, DATA, the body (dot-stuffed,
   * CRLF line ends, RFC 5321 4.5.2) and the final dot. Rejects with EENVELOPE
   * when MAIL, every RCPT or DATA is refused (the session stays in step for an
   * RSET), EMESSAGE when the message is, a connection code when the session fails.
   */
  async send(env: TransactionEnvelope, body: BodySource, tx: TransactionState = { bodyStarted: false }): Promise<TransactionInfo> {
    if (BREAKS_COMMAND.test(env.from)) throw smtpError(`Invalid sender ${JSON.stringify(env.from)}`, 'EENVELOPE');
    const bad = env.to.find((t) => !t || BREAKS_COMMAND.test(t));
    if (bad !== undefined || env.to.length === 0) throw smtpError(bad === undefined ? 'No recipients defined' : `Invalid recipient ${JSON.stringify(bad)}`, 'EENVELOPE');
    const commands = [this.mailCommand(env), ...env.to.map((t) => this.rcptCommand(env.dsn, t))];
    let mail: Reply;
    let rcpt: Reply[] = [];
    let data: Reply | undefined;
    if (this.extensions.has('PIPELINING')) {
      // All at once, in one write. Settled together: a server that refuses MAIL with 421 and
      // closes fails the rest, and the error to report is its reply, not the closed connection.
      const replies = [...commands, 'DATA'].map(() => this.next());
      this.socket.write(`${commands.join('\r\n')}\r\nDATA\r\n`);
      const all = await Promise.allSettled(replies);
      const failed = all.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        const first = all[0]!;
        throw first.status === 'fulfilled' && first.value.code >= 300 ? smtpError('Mail command failed', 'EENVELOPE', first.value) : failed.reason;
      }
      const got = all.map((r) => (r as PromiseFulfilledResult<Reply>).value);
      mail = got[0]!;
      rcpt = got.slice(1, -1);
      data = got[got.length - 1];
    } else {
      mail = await this.command(commands[0]!);
      if (mail.code < 300) {
        for (const c of commands.slice(1)) rcpt.push(await this.command(c));
        if (rcpt.some((r) => r.code < 300)) data = await this.command('DATA');
      }
    }
    const accepted: string[] = [];
    const rejectedErrors: NonNullable<SmtpError['rejectedErrors']> = [];
    rcpt.forEach((r, i) => {
      if (r.code >= 200 && r.code < 300) accepted.push(env.to[i]!);
      else rejectedErrors.push(Object.assign(smtpError('Recipient command failed', 'EENVELOPE', r), { recipient: env.to[i]! }));
    });
    // A 354 after a refused envelope still opens DATA: an empty message ends it (RFC 2920 3.1).
    if (data?.code === 354 && (mail.code >= 300 || accepted.length === 0)) await this.command('.');
    if (mail.code >= 300) throw smtpError('Mail command failed', 'EENVELOPE', mail);
    const rejected = rejectedErrors.map((e) => e.recipient!);
    if (accepted.length === 0) {
      const last = rejectedErrors[rejectedErrors.length - 1]!;
      throw Object.assign(smtpError("Can't send mail - all recipients were rejected", 'EENVELOPE', { code: last.responseCode!, text: last.response! }), { rejectedErrors });
    }
    if (!data || data.code !== 354) throw smtpError('Data command failed', 'EENVELOPE', data);
    const final = this.next();
    final.catch(() => undefined); // a body that fails first is the error to report
    tx.bodyStarted = true;
    await this.writeBody(body, tx, env.cleanFrom);
    const r = await final;
    if (r.code < 200 || r.code >= 300) throw Object.assign(smtpError('Message failed', 'EMESSAGE', r), rejectedErrors.length ? { rejectedErrors } : {});
    return { accepted, rejected, ...(rejectedErrors.length ? { rejectedErrors } : {}), response: r.text };
  }

  /** RSET: back to the start of a transaction after a refused one. */
  async reset(): Promise<void> {
    const r = await this.command('RSET');
    if (r.code < 200 || r.code >= 300) throw smtpError('RSET failed', 'EPROTOCOL', r);
  }

  /**
   * QUIT and close; the session is gone for the caller at once. A transaction handed off
   * (TransactionState.handOff) may still wait for the reply to its dot: QUIT goes behind
   * it, and that reply still reaches it.
   */
  quit(): void {
    if (this.destroyed) return;
    this.onLoss = undefined;
    const socket = this.socket;
    if (this.waiters.length > 0) {
      this.quitting = true;
      this.waiters.push({ resolve: () => undefined, reject: () => undefined }); // the 221
      // Not end(): a server may close at our FIN before it has answered the dot (smtp-server does).
      socket.write('QUIT\r\n');
    } else {
      this.fail(smtpError('Session closed', 'ECONNECTION'));
      socket.end('QUIT\r\n');
    }
    // A server that never closes its side does not hold the socket past the session timeout.
    setTimeout(() => socket.destroy(), this.o.timeoutMs).unref();
  }

  close(): void {
    this.onLoss = undefined;
    this.fail(smtpError('Session closed', 'ECONNECTION'));
    this.socket.destroy();
  }

  private mailCommand(env: TransactionEnvelope): string {
    const args: string[] = [];
    if (this.extensions.has('SMTPUTF8') && (NON_ASCII.test(env.from) || env.to.some((t) => NON_ASCII.test(t)))) args.push('SMTPUTF8');
    const d = env.dsn;
    if (d && this.offersDsn) {
      if (d.ret) args.push(`RET=${xtext(d.ret)}`);
      if (d.envid) args.push(`ENVID=${xtext(d.envid)}`);
    }
    return `MAIL FROM:<${env.from}>${args.length ? ` ${args.join(' ')}` : ''}`;
  }

  private rcptCommand(dsn: EnvelopeDsn | undefined, to: string): string {
    const p = this.offersDsn ? dsn?.rcpt?.[to] : undefined;
    const args = [...(p?.notify ? [`NOTIFY=${p.notify.join(',')}`] : []), ...(p?.orcpt ? [`ORCPT=${xtext(p.orcpt)}`] : [])];
    return `RCPT TO:<${to}>${args.length ? ` ${args.join(' ')}` : ''}`;
  }

  /**
   * The body and the final dot. The last chunk is held back until the body
   * ends, so it and the dot leave in one write: one segment and one TLS record
   * instead of two (a 2 KB body is one chunk, so its whole DATA is one write).
   * A stream is read as the socket takes it ('drain'), never held whole.
   */
  private async writeBody(body: BodySource, tx: TransactionState, cleanFrom: number | undefined): Promise<void> {
    try {
      await this.writeChunks(body, tx, cleanFrom);
    } catch (e) {
      // Mid-DATA there is no way back to a clean state: the session goes.
      this.close();
      throw Object.assign(e as SmtpError, { code: (e as SmtpError).code ?? 'EMESSAGE' });
    }
  }

  private async writeChunks(body: BodySource, tx: TransactionState, cleanFrom: number | undefined): Promise<void> {
    const socket = this.socket;
    let last: number | false = false;
    /** Bytes of the body before the chunk in hand. */
    let offset = 0;
    /** Written together with the dot: the whole body when it is in memory, else the stream's last chunk. */
    const held: Buffer[] = [];
    const pieces = bodyPieces(body);
    if (pieces) {
      for (const piece of pieces) {
        for (let at = 0; at < piece.length; at += STUFF_SLICE) {
          const chunk = piece.subarray(at, at + STUFF_SLICE);
          const out = stuffChunkAt(chunk, last, offset, cleanFrom);
          held.push(out);
          last = chunk[chunk.length - 1]!;
          offset += chunk.length;
          if (out !== chunk) await nextTurn();
        }
      }
    } else {
      for await (const c of body as AsyncIterable<Buffer | string>) {
        if (this.failure) throw this.failure;
        const chunk = Buffer.isBuffer(c) ? c : Buffer.from(c);
        if (chunk.length === 0) continue;
        const prev = held.pop();
        if (prev && !socket.write(prev)) await this.drained();
        held.push(stuffChunkAt(chunk, last, offset, cleanFrom));
        last = chunk[chunk.length - 1]!;
        offset += chunk.length;
      }
    }
    if (this.failure) throw this.failure;
    socket.cork();
    for (const chunk of held) socket.write(chunk);
    socket.write(endOfData(last));
    // The next transaction's envelope, written within this turn, leaves with the dot: one
    // write and one read less per message on both sides (issue #17).
    if (this.extensions.has('PIPELINING') && tx.handOff?.()) setImmediate(() => socket.uncork());
    else socket.uncork();
  }

  /** Resolves on 'drain'; rejects when the session fails first (a reset while the body goes out). */
  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.bodyAbort = undefined;
        this.socket.off('drain', done);
        resolve();
      };
      this.bodyAbort = (err) => {
        this.socket.off('drain', done);
        reject(err);
      };
      this.socket.once('drain', done);
    });
  }

  private async hello(): Promise<void> {
    let r = await this.command(`EHLO ${this.o.name}`);
    if (r.code === 421) throw smtpError('Server terminates connection', 'ECONNECTION', r);
    this.extensions = new Set();
    this.authMechanisms = new Set();
    if (r.code >= 200 && r.code < 300) {
      for (const line of r.text.split('\n').slice(1)) {
        const words = line.slice(4).trim().split(/[\s=]+/u);
        const keyword = words[0]?.toUpperCase();
        if (!keyword) continue;
        this.extensions.add(keyword);
        if (keyword === 'AUTH') for (const m of words.slice(1)) this.authMechanisms.add(m.toUpperCase());
      }
      return;
    }
    if (this.o.requireTls) throw smtpError('EHLO failed but HELO does not support required STARTTLS', 'ECONNECTION', r);
    r = await this.command(`HELO ${this.o.name}`);
    if (r.code < 200 || r.code >= 300) throw smtpError('HELO failed', 'EPROTOCOL', r);
  }

  private async login(auth: { user: string; pass: string }): Promise<void> {
    const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
    let r: Reply;
    if (this.authMechanisms.has('PLAIN') || !this.authMechanisms.has('LOGIN')) {
      r = await this.command(`AUTH PLAIN ${b64(`\u0000${auth.user}\u0000${auth.pass}`)}`);
    } else {
      r = await this.command('AUTH LOGIN');
      if (r.code === 334) r = await this.command(b64(auth.user));
      if (r.code === 334) r = await this.command(b64(auth.pass));
    }
    if (r.code !== 235) throw smtpError('Invalid login', 'EAUTH', r);
  }

  /** TLS over the connected socket (STARTTLS); the plain socket's reader is moved to the TLS one. */
  private async upgrade(servername: string | undefined): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('timeout');
    plain.setTimeout(0); // the TLS socket's own timer takes over
    this.socket = tls.connect({ ...this.o.tls, socket: plain, ...(servername ? { servername } : {}) });
    this.attach(this.socket);
    try {
      await this.connected('secureConnect');
    } catch (e) {
      throw Object.assign(e as SmtpError, { code: 'ETLS' });
    }
  }

  private command(line: string): Promise<Reply> {
    const r = this.next();
    this.socket.write(`${line}\r\n`);
    return r;
  }

  /** The next reply the server sends (replies arrive in the order of the commands). */
  private next(): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private connected(event: 'connect' | 'secureConnect'): Promise<void> {
    const socket = this.socket;
    return new Promise((resolve, reject) => {
      const done = (): void => {
        socket.off('error', failed);
        socket.off('close', failed);
        resolve();
      };
      const failed = (err?: Error | boolean): void => {
        socket.off(event, done);
        reject(this.failure ?? smtpError(err instanceof Error ? err.message : 'Connection closed', 'ECONNECTION'));
      };
      socket.once(event, done);
      socket.once('error', failed);
      socket.once('close', failed);
    });
  }

  private attach(socket: net.Socket): void {
    socket.setTimeout(this.o.timeoutMs);
    // Every write is a whole group (envelope, or body and dot): Nagle would only hold one back
    // until the server acknowledged the last, 40 ms against a server that delays its ACKs.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_MS);
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('timeout', () => this.lost(smtpError('Timeout', 'ETIMEDOUT')));
    socket.on('error', (err: Error & { code?: string }) => this.lost(smtpError(err.message, err.code === 'ETIMEDOUT' ? 'ETIMEDOUT' : 'ECONNECTION')));
    socket.on('close', () => this.lost(smtpError('Connection closed unexpectedly', 'ECONNECTION')));
  }

  private read(chunk: Buffer): void {
    let text = this.partial + chunk.toString('utf8');
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      const line = text.slice(0, nl).replace(/\r$/u, '');
      text = text.slice(nl + 1);
      this.lines.push(line);
      this.linesBytes += line.length;
      if (this.linesBytes > MAX_REPLY_BYTES) return this.lost(smtpError(`Reply longer than ${MAX_REPLY_BYTES} bytes`, 'EPROTOCOL'));
      if (!/^\d{3}(?:[ \t]|$)/u.test(line)) {
        if (/^\d{3}-/u.test(line)) continue;
        return this.lost(smtpError(`Not an SMTP reply: ${JSON.stringify(line.slice(0, 100))}`, 'EPROTOCOL'));
      }
      const reply: Reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') };
      this.lines = [];
      this.linesBytes = 0;
      const w = this.waiters.shift();
      // Nothing asked: a server closing an idle session says why first (421).
      if (!w) return this.lost(smtpError('Unexpected reply', reply.code === 421 ? 'ECONNECTION' : 'EPROTOCOL', reply));
      w.resolve(reply);
    }
    this.partial = text;
    if (text.length + this.linesBytes > MAX_REPLY_BYTES) this.lost(smtpError(`Reply longer than ${MAX_REPLY_BYTES} bytes`, 'EPROTOCOL'));
  }

  /** The session failed: every waiting reply fails with `err`; the idle listener hears of it when nothing was waiting. */
  private lost(err: SmtpError): void {
    if (this.failure) return;
    const waiting = this.waiters.length > 0;
    this.fail(err);
    this.socket.destroy();
    if (!waiting) this.onLoss?.(err);
  }

  private fail(err: SmtpError): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.bodyAbort?.(err);
  }
}
