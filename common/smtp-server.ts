/*
 * smtp-server.ts — smtp-server with a connection gate in front of the parser, a
 * configurable greeting delay, an error budget and our enhanced status codes.
 *
 * Connection gate (what keeps a listener cheap to hold under attack): every
 * accepted socket is judged in connect(), before smtp-server constructs an
 * SMTPConnection (and with it a parser, a session and timers):
 *   - `admit(ip)` refuses clients outside the allowlist (`554 5.7.1`);
 *   - `maxConnections` / `maxConnectionsPerIp` refuse with `421 4.7.0`.
 * A refused socket gets one reply line, is ended and destroyed once the line is
 * flushed: it costs a file descriptor for a moment and nothing is read from it.
 * With the PROXY protocol the gate sees the address from the header, and the
 * sockets waiting for a header are capped by smtp-server's `maxClients`.
 * A session also ends after `sessionMs` in total (`421 4.4.2`), and after more
 * than `maxErrors` syntax/sequence errors (500-504) with `421 4.7.0`.
 *
 * Greeting delay: smtp-server waits a hard-coded 100 ms before its 220 greeting
 * so that it can refuse "early talkers" (spam bots; Postfix's postscreen pregreet
 * test). That also caps a one-message-per-connection client at ~10 msg/s per
 * session, so `greetingDelayMs` applies to clients outside `trustedNetworks`, and
 * trusted clients are greeted at once (override of SMTPConnection.init()).
 *
 * AUTH is advertised only after STARTTLS unless `allowInsecureAuth`, and then only
 * to the clients `SmtpExtensions.authBeforeTls` names (handler_EHLO): one lab
 * account's clear-text AUTH must not make every client offer its password in clear.
 *
 * ESMTP parameters (RFC 5321 4.1.1.11): MAIL and RCPT parameters other than those
 * of the extensions we offer (`SmtpExtensions`) get `555 5.5.4`; a non-ASCII
 * address is refused with `553 5.6.7` unless MAIL said SMTPUTF8 (RFC 6531 3.5).
 * Judged on the command's raw bytes (handler_MAIL/handler_RCPT), before
 * smtp-server turns an `xn--` domain into Unicode.
 *
 * Enhanced status codes (RFC 2034, RFC 3463): replies whose text already starts
 * with one (every PostinoError) are sent as they are; smtp-server's own replies
 * get its contextual code (e.g. `552 5.3.4` for a declared SIZE over the limit).
 *
 * Reply batching (RFC 2920 4, Postfix's rule): the replies to commands that
 * arrived together leave in one socket write (one syscall, one TLS record)
 * instead of one write each; a loopback write costs ~100-170 µs of CPU here, as
 * the kernel runs the receiver's TCP work inline. The socket is corked at the
 * first reply written while the parser works on an input chunk, and uncorked
 * when the parser has dispatched every complete line of that chunk (its write
 * callback: nothing more is waiting to be processed). Replies after which the
 * client sends nothing until it has read them (FLUSH_CODES: the 220 greeting
 * and STARTTLS answer, 221, 334 AUTH continuation, 354, 421) uncork at once, so
 * does close(), upgrade() (the 220 must be on the wire before TLS takes the raw
 * socket) and _whenWritable() when the corked socket is over its high-water
 * mark (smtp-server waits for 'drain' there, which a corked socket never
 * emits). A handler that calls back later (onMailFrom/onRcptTo awaiting
 * storage) keeps the batch open only while the rest of the chunk waits for it,
 * never while waiting for the client. Replies written outside a chunk (greeting,
 * timeouts, the session limit) go out at once, as a lock-step client's replies
 * do: its chunk holds one command, whose reply is flushed when it is done.
 *
 * QUIT: the socket is closed as soon as the 221 is flushed, as Postfix's smtpd
 * does; other closes (421) keep smtp-server's bounded half-closed wait (close()).
 *
 * PROXY protocol: headers are expected only from `proxyFrom` (CIDR); v2 (binary)
 * is read by proxy-v2.ts, v1 (text) by smtp-server itself.
 *
 * Private methods of smtp-server SMTP_SERVER_VERSION (pinned exactly in
 * package.json) are overridden or called here; the lists below name them, and
 * test/common/smtp-server-seam.test.ts fails when the installed smtp-server is
 * another version or one of them is gone, so an upgrade is a deliberate act.
 *
 * Side effects: none until listen().
 */
import { randomHex } from './random-pool.js';
import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';
import { NetworkList, normalizeIp } from './cidr.js';
import { PostinoError } from './errors.js';
import { readProxyV2 } from './proxy-v2.js';
import { plainAddressCommand } from './smtp-address.js';
import { feedOneCommandLine } from './smtp-command-line.js';
import { feedDataStream } from './smtp-data-feed.js';

export interface GreetingPolicy {
  greetingDelayMs: number;
  trustedNetworks: readonly string[];
}

export interface ConnectionGate {
  /** Refuses a client by its address: the error to send (554 at connect), or undefined to go on. */
  admit?(ip: string): PostinoError | undefined;
  /** Concurrent sessions; 0 = no limit. */
  maxConnections: number;
  /** Concurrent sessions from one address; 0 = no limit. */
  maxConnectionsPerIp: number;
  /** Total session length; 0 = no limit. */
  sessionMs: number;
  /** Syntax/sequence error replies tolerated per session; 0 = no limit. */
  maxErrors: number;
  /** Load balancers that send a PROXY protocol header (CIDR). */
  proxyFrom: readonly string[];
  /** Told about each refusal (for logs). */
  onRefused?(ip: string, err: PostinoError): void;
}

const NO_GATE: ConnectionGate = { maxConnections: 0, maxConnectionsPerIp: 0, sessionMs: 0, maxErrors: 0, proxyFrom: [] };

/** RFC 3461 4.4: "ENVID ... MUST NOT exceed 100 characters". */
const MAX_ENVID_CHARS = 100;
/** RFC 3461 4.2: ORCPT "MUST NOT exceed 500 characters". */
const MAX_ORCPT_CHARS = 500;
/** An enhanced status code at the start of a reply text: such a reply is sent as is. */
const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;
/** RFC 5321 4.2.3: 500-504 are the syntax and sequence errors a broken or hostile client produces. */
const isSyntaxError = (code: number): boolean => code >= 500 && code <= 504;
/**
 * Replies the client must read before it sends anything more (RFC 2920 3.1: the
 * greeting, STARTTLS's 220, AUTH's 334, DATA's 354; 221 and 421 end the
 * session): written at once, together with any replies batched before them.
 */
const FLUSH_CODES: ReadonlySet<number> = new Set([220, 221, 334, 354, 421]);

/** The smtp-server release whose private methods this file overrides. */
export const SMTP_SERVER_VERSION = '3.21.6';

/** SMTPConnection methods TunedConnection overrides, and those of its internals it calls. */
export const CONNECTION_OVERRIDES = ['init', 'send', 'close', '_onClose', 'handler_QUIT', 'handler_EHLO', 'handler_MAIL', 'handler_RCPT', '_createParser', '_whenWritable', 'upgrade', '_parseAddressCommand', '_onCommand'] as const;
export const CONNECTION_CALLS = ['_setListeners', 'connectionReady', '_isSupported', '_getHandler'] as const;
/** SMTPStream methods each parser gets replaced (smtp-data-feed.ts), and those of its internals that calls. */
export const STREAM_OVERRIDES = ['_feedDataStream'] as const;
export const STREAM_CALLS = ['_countDataBytes', '_endDataMode'] as const;

/** The MAIL and RCPT parameters a server takes (upper case); any other gets 555 5.5.4. */
export interface SmtpExtensions {
  mailParameters: readonly string[];
  rcptParameters: readonly string[];
  /** With `allowInsecureAuth`: the clients offered AUTH before STARTTLS (default: every client). */
  authBeforeTls?: ((clientIp: string) => boolean) | undefined;
}

/** RFC 1870 SIZE, RFC 6152 BODY (8BITMIME), RFC 6531 SMTPUTF8: what every server of ours offers. */
export const BASE_EXTENSIONS: SmtpExtensions = { mailParameters: ['SIZE', 'BODY', 'SMTPUTF8'], rcptParameters: [] };

/** MAIL, RCPT and DATA in lower case, four bytes as one number each: a byte | 0x20 is the letter's lower case, and only the letter's two cases give it. */
const MAIL = 0x6d61696c;
const RCPT = 0x72637074;
const DATA = 0x64617461;

/** MAIL, RCPT or DATA when the line is that verb alone or followed by a space (smtp-server's command name), in any case. */
export function fastVerb(command: Buffer): 'MAIL' | 'RCPT' | 'DATA' | undefined {
  if (command.length < 4 || (command.length > 4 && command[4] !== 0x20)) return undefined;
  const v = (((command[0]! | 0x20) << 24) | ((command[1]! | 0x20) << 16) | ((command[2]! | 0x20) << 8) | (command[3]! | 0x20)) >>> 0;
  return v === MAIL ? 'MAIL' : v === RCPT ? 'RCPT' : v === DATA ? 'DATA' : undefined;
}

function hasNonAscii(command: Buffer | string): boolean {
  const b = typeof command === 'string' ? Buffer.from(command) : command;
  return b.some((x) => x > 0x7f);
}
/** SMTPServer methods PostinoSMTPServer overrides, and those of its internals it calls. */
export const SERVER_OVERRIDES = ['connect', '_expectsProxyHeader', '_handleProxy'] as const;
export const SERVER_CALLS = ['_onError', '_onClientConnect'] as const;

/** What one session gets on top of smtp-server's connection options. */
interface SessionTuning {
  /** 0 for trusted clients. */
  greetingDelayMs: number;
  maxErrors: number;
  /** Called once when the session ends (the caps count it no more). */
  onGone: () => void;
  extensions: SmtpExtensions;
}

export class TunedConnection extends SMTPConnection {
  private errors = 0;
  private readonly greetingDelayMs: number;
  private readonly maxErrors: number;
  private onGone: (() => void) | undefined;
  private readonly mailParameters: ReadonlySet<string>;
  private readonly rcptParameters: ReadonlySet<string>;
  private readonly authBeforeTls: ((clientIp: string) => boolean) | undefined;
  /** The parser is working on an input chunk: replies written now are batched (see the header). */
  private inInput = false;
  /** The socket corked for the current batch (the raw one before STARTTLS, the TLS one after). */
  private corked: net.Socket | undefined;

  /** smtp-server's own three arguments, then ours. */
  constructor(server: SMTPServer, socket: net.Socket | tls.TLSSocket, options: SMTPConnectionOptions | null | undefined, tuning: SessionTuning) {
    super(server, socket, options);
    this.greetingDelayMs = tuning.greetingDelayMs;
    this.maxErrors = tuning.maxErrors;
    this.onGone = tuning.onGone;
    this.mailParameters = new Set(tuning.extensions.mailParameters);
    this.rcptParameters = new Set(tuning.extensions.rcptParameters);
    this.authBeforeTls = tuning.extensions.authBeforeTls;
  }

  /**
   * The parse parameterRefusal made of the command its handler is about to pass to smtp-server,
   * which parses the same Buffer again first thing (handler_MAIL, handler_RCPT): handed over once
   * instead (_parseAddressCommand below). Why: the parse (splits, regular expressions, punycode
   * for the domain) ran twice for every MAIL and RCPT: 7.3-8.4 µs a message more (microbenchmark),
   * ~3% of the forwarder's main thread taking 2 KB messages over reused connections (issue #17).
   */
  private parsedOnce: { verb: string; command: Buffer; parsed: ReturnType<SMTPConnection['_parseAddressCommand']> } | undefined;

  override _parseAddressCommand(rawName: string, rawCommand: Buffer | string): ReturnType<SMTPConnection['_parseAddressCommand']> {
    const once = this.parsedOnce;
    this.parsedOnce = undefined;
    if (once && once.command === rawCommand && once.verb === rawName) return once.parsed;
    return super._parseAddressCommand(rawName, rawCommand);
  }

  /** 555 for a parameter we do not offer, 553 for UTF-8 without SMTPUTF8; undefined lets smtp-server go on. */
  private parameterRefusal(verb: 'mail from' | 'rcpt to', command: Buffer): PostinoError | undefined {
    // The plain form by a direct scan (smtp-address.ts: the same object); anything else by smtp-server.
    const plain = plainAddressCommand(verb, command);
    const parsed = plain ?? super._parseAddressCommand(verb, command);
    // Read only here; smtp-server's handler gets this object as its own parse (see parsedOnce).
    this.parsedOnce = { verb, command, parsed };
    if (!parsed) return undefined; // smtp-server answers the syntax error
    const args = (parsed.args || {}) as Record<string, string | boolean>;
    const known = verb === 'mail from' ? this.mailParameters : this.rcptParameters;
    const unknown = Object.keys(args).find((k) => !known.has(k));
    if (unknown) return new PostinoError('UNKNOWN_PARAMETER', `${verb === 'mail from' ? 'MAIL FROM' : 'RCPT TO'} parameter ${unknown} not recognized`);
    // RFC 3461 4.2 and 4.4: bounded, because they are stored with the message and quoted in its DSNs.
    if (typeof args.ENVID === 'string' && args.ENVID.length > MAX_ENVID_CHARS) return new PostinoError('BAD_REQUEST', `ENVID longer than ${MAX_ENVID_CHARS} characters`);
    if (typeof args.ORCPT === 'string' && args.ORCPT.length > MAX_ORCPT_CHARS) return new PostinoError('BAD_REQUEST', `ORCPT longer than ${MAX_ORCPT_CHARS} characters`);
    if (verb === 'rcpt to' && !this.session.envelope.mailFrom) return undefined; // smtp-server answers 503
    const utf8 = verb === 'mail from' ? args.SMTPUTF8 === true : Boolean(this.session.envelope.smtpUtf8);
    // A plain line is ASCII throughout.
    if (!utf8 && !plain && hasNonAscii(command)) return new PostinoError('UTF8_NOT_ENABLED', 'Non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM');
    return undefined;
  }

  override handler_MAIL(command: Buffer, callback: () => void): void {
    this.refuseOr('mail from', command, callback, () => super.handler_MAIL(command, callback));
  }

  override handler_RCPT(command: Buffer, callback: () => void): void {
    this.refuseOr('rcpt to', command, callback, () => super.handler_RCPT(command, callback));
  }

  /**
   * Answers a refused MAIL or RCPT here, or lets smtp-server's handler go on with the parse made
   * for the check. A parse left behind by a refusal is never handed to another command: it is
   * matched by the command's own Buffer, and the next check replaces it.
   */
  private refuseOr(verb: 'mail from' | 'rcpt to', command: Buffer, callback: () => void, handler: () => void): void {
    const refused = this.parameterRefusal(verb, command);
    if (!refused) return handler();
    this.send(refused.smtpCode, refused.message, false);
    callback();
  }

  /**
   * A session stops counting against the caps when it ends: at QUIT/421 (close(),
   * the socket may linger half-closed for a while, bounded by smtp-server) or
   * when the socket closes. Observed here, not on the socket: STARTTLS removes
   * the raw socket's listeners.
   */
  private released(): void {
    const gone = this.onGone;
    this.onGone = undefined;
    gone?.();
  }

  /**
   * After QUIT's 221 the socket is closed as soon as the reply is flushed, as Postfix's smtpd
   * does (RFC 5321 4.1.1.10: the receiver sends 221, then closes the channel), instead of
   * smtp-server's end() and then waiting, half-closed for up to 5 s, for the client's FIN. A
   * one-message-per-connection client paid for that wait with a shutdown, a read of its FIN
   * or RST, and an Error built for its ECONNRESET: the forwarder's main thread spent 0.58-0.68
   * ms a message with the wait, 0.53-0.62 without (2 KB, smtp-source one message per connection,
   * issue #17). Other closes (421: errors, session limit, shutdown) keep the wait: a client
   * still sending must be able to read why it is cut off, which a close over unread input
   * (a reset) would not let it.
   */
  private quit = false;

  /**
   * MAIL, RCPT and DATA in an established session go straight to their handler. For every
   * command smtp-server's _onCommand turns the line into a string three times (for the name,
   * for a log record, for the test against an HTTP request line), splits it, builds that log
   * record for the logger we switch off, and runs the regular expression; for a line that starts
   * with one of these verbs and a space none of it can change the outcome: it is no HTTP request
   * line, and the name is the verb. Measured on the forwarder at `-d` (issue #17, thirty-first
   * round): 1.4 KB less JS heap allocated a message (34.1 → 32.7 KB, V8's sampling heap profiler);
   * its main thread's CPU a message in paired rounds against the build before −4.9%, −3.2% and
   * +4.4%, inside this VM's noise. What is left of _onCommand
   * is done as it does it: the disabled-command check, and the handler called with
   * `_handlerPending` set and a throw answered with 451. Every other line, and these verbs
   * whenever one of smtp-server's other checks could answer instead (before the greeting, during
   * an AUTH exchange or a STARTTLS handshake, while the server closes, before HELO/EHLO, LMTP,
   * AUTH required), take smtp-server's own path.
   */
  override _onCommand(command: Buffer, callback?: () => void): void {
    const verb = this._nextHandler || this._upgrading || !this._ready || !this.hostNameAppearsAs || this._server._closeTimeout ? undefined : fastVerb(command);
    const opts = this._server.options;
    if (verb === undefined || opts.lmtp || !opts.authOptional || !this._isSupported(verb)) return super._onCommand(command, callback);
    const handler = this._getHandler(verb)!;
    const next = callback ?? (() => false);
    let handled = false;
    const handlerCallback = (): void => {
      handled = true;
      this._handlerPending = false;
      this._whenWritable(next);
    };
    this._handlerPending = true;
    try {
      handler.call(this, command, handlerCallback);
    } catch (err) {
      this._server.logger.error({ err, tnx: 'command', cid: this.id, command: verb }, '%s Failed to process %s command: %s', this.id, verb, (err as Error).message);
      if (!handled) {
        this.send(451, 'Error: internal server error');
        handlerCallback();
      }
    }
  }

  override handler_QUIT(command: Buffer, callback: () => void): void {
    this.quit = true;
    super.handler_QUIT(command, callback);
  }

  override close(): void {
    this.flushReplies();
    const socket = this._socket;
    super.close();
    this.released();
    if (!this.quit || socket.destroyed) return;
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  }

  override _onClose(): void {
    super._onClose();
    this.released();
  }

  override init(): void {
    this._setListeners(() => {
      const max = this._server.options.maxClients;
      if (max && this._server.connections.size > max) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      if (this.greetingDelayMs === 0) return this.connectionReady();
      setTimeout(() => this.connectionReady(), this.greetingDelayMs).unref();
    });
  }

  /**
   * AUTH is not advertised before STARTTLS unless insecure AUTH is allowed for
   * this client (Postfix's smtpd_tls_auth_only); a client trying anyway gets 538
   * (smtp-server's, or the intake's for a client not named by authBeforeTls).
   * handler_EHLO builds its reply synchronously, so the swap is local to it.
   */
  override handler_EHLO(command: Buffer, callback: () => void): void {
    const opts = this._server.options;
    const clearAuth = Boolean(opts.allowInsecureAuth) && (this.authBeforeTls?.(this.remoteAddress) ?? true);
    if (this.secure || clearAuth || !opts.authMethods?.length) return super.handler_EHLO(command, callback);
    const methods = opts.authMethods;
    opts.authMethods = [];
    try {
      super.handler_EHLO(command, callback);
    } finally {
      opts.authMethods = methods;
    }
  }

  /** Each parser (the first, and the TLS session's after STARTTLS) opens a batch per input chunk, takes a one-line chunk by smtp-command-line.ts and scans DATA with smtp-data-feed.ts. */
  override _createParser(): SMTPStream {
    const parser = super._createParser();
    parser._feedDataStream = feedDataStream;
    const write = parser._write.bind(parser);
    // SMTPStream re-enters _write itself (the rest of a chunk after DATA, the input after a
    // message), passing on the callback it got: the batch ends with the outermost callback.
    parser._write = (chunk: Buffer, encoding: BufferEncoding, next: (err?: Error | null) => void): void => {
      this.inInput = true;
      const done = (err?: Error | null): void => {
        this.inInput = false;
        this.flushReplies();
        next(err);
      };
      // A lock-step client's chunk, one whole command line, without the library's string round trip (smtp-command-line.ts).
      if (!feedOneCommandLine(parser, chunk, done)) write(chunk, encoding, done);
    };
    return parser;
  }

  /** smtp-server waits for 'drain' here when the socket is over its high-water mark: never while corked. */
  override _whenWritable(next: () => void): void {
    if (this.corked?.writableNeedDrain) this.flushReplies();
    super._whenWritable(next);
  }

  /** The 220 to STARTTLS leaves on the raw socket before TLS takes it over. */
  override upgrade(callback: () => void, secureCallback?: () => void): void {
    this.flushReplies();
    super.upgrade(callback, secureCallback);
  }

  private flushReplies(): void {
    const socket = this.corked;
    if (!socket) return;
    this.corked = undefined;
    socket.uncork();
  }

  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (typeof data === 'string' && ENHANCED_PREFIX.test(data)) context = false;
    if (this.inInput && !this.corked && !FLUSH_CODES.has(code) && !this._upgrading && !this._socket.destroyed) {
      this.corked = this._socket;
      this.corked.cork();
    }
    super.send(code, data, context);
    if (FLUSH_CODES.has(code)) this.flushReplies();
    if (this.maxErrors > 0 && isSyntaxError(code) && ++this.errors > this.maxErrors) {
      const e = new PostinoError('TOO_MANY_ERRORS', 'Too many errors, closing connection');
      super.send(e.smtpCode, e.message, false);
    }
  }
}

/** One reply line, then the socket goes: nothing is read, no session is built. */
function refuseSocket(socket: net.Socket | tls.TLSSocket, err: PostinoError): void {
  socket.on('error', () => undefined);
  socket.end(`${err.smtpCode} ${err.message}\r\n`);
  socket.once('finish', () => socket.destroy());
  // A peer that never reads cannot keep it: the write is tiny, but make sure.
  setTimeout(() => socket.destroy(), 5_000).unref();
}

export class PostinoSMTPServer extends SMTPServer {
  private readonly trusted: NetworkList;
  private readonly delayMs: number;
  private readonly gate: ConnectionGate;
  private readonly proxyFrom: NetworkList;
  private readonly perIp = new Map<string, number>();
  private readonly extensions: SmtpExtensions;
  /** Sessions admitted and not yet closed (socket level, so STARTTLS does not double count). */
  active = 0;

  constructor(options: SMTPServerOptions, policy: GreetingPolicy, gate: ConnectionGate = NO_GATE, extensions: SmtpExtensions = BASE_EXTENSIONS) {
    const proxy = gate.proxyFrom.length > 0;
    // maxClients bounds the sockets still waiting for a PROXY header (smtp-server drops the excess).
    // EHLO offers DSN and REQUIRETLS only when their parameters are taken (a client such as Postfix
    // sends NOTIFY/ORCPT to any server that offers DSN, and would get 555 otherwise).
    const offers = {
      hideDSN: !extensions.rcptParameters.includes('NOTIFY'),
      hideREQUIRETLS: !extensions.mailParameters.includes('REQUIRETLS'),
    };
    super({ ...options, ...offers, ...(proxy ? { useProxy: true } : {}), ...(gate.maxConnections ? { maxClients: gate.maxConnections } : {}) });
    this.trusted = new NetworkList(policy.trustedNetworks);
    this.delayMs = policy.greetingDelayMs;
    this.gate = gate;
    this.proxyFrom = new NetworkList(gate.proxyFrom);
    this.extensions = extensions;
  }

  /** PROXY headers only from the configured load balancers (smtp-server compares exact IPs). */
  override _expectsProxyHeader(socket: net.Socket): boolean {
    return this.proxyFrom.contains(socket.remoteAddress);
  }

  /** PROXY v2 first; anything else goes to smtp-server's v1 reader untouched. */
  override _handleProxy(socket: net.Socket, callback: (err: Error | null, socketOptions?: SMTPConnectionOptions & { id: string }) => void): void {
    if (!this._expectsProxyHeader(socket)) {
      // smtp-server's own branch for a socket without a header, with the session id from our pool of
      // random bytes: its crypto.randomBytes per connection was ~60 µs in a profile of the forwarder (issue #17).
      const ignore = this.options.ignoredHosts?.includes(socket.remoteAddress ?? '') ?? false;
      setImmediate(() => callback(null, { id: randomHex(10), ignore }));
      return;
    }
    readProxyV2(socket, (err, r) => {
      if (err || !r) {
        socket.on('error', () => undefined);
        socket.destroy();
        return callback(err ?? new Error('PROXY header unreadable'));
      }
      const id = randomHex(10);
      switch (r.kind) {
        case 'not-v2':
          return super._handleProxy(socket, callback);
        case 'local':
          return callback(null, { id });
        case 'address':
          return callback(null, { id, remoteAddress: r.remoteAddress, remotePort: r.remotePort });
        case 'invalid':
          socket.on('error', () => undefined);
          socket.destroy();
          return callback(new Error(r.reason));
      }
    });
  }

  private refusal(ip: string): PostinoError | undefined {
    const denied = this.gate.admit?.(ip);
    if (denied) return denied;
    if (this.gate.maxConnections && this.active >= this.gate.maxConnections) {
      return new PostinoError('TOO_MANY_CONNECTIONS', 'Too many connections, try again later');
    }
    if (this.gate.maxConnectionsPerIp && (this.perIp.get(ip) ?? 0) >= this.gate.maxConnectionsPerIp) {
      return new PostinoError('TOO_MANY_CONNECTIONS_FROM_IP', `Too many connections from ${ip}, try again later`);
    }
    return undefined;
  }

  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const ip = normalizeIp(socketOptions?.remoteAddress ?? socket.remoteAddress ?? '');
    const refused = this.refusal(ip);
    if (refused) {
      this.gate.onRefused?.(ip, refused);
      refuseSocket(socket, refused);
      return;
    }
    this.active++;
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
    let sessionTimer: NodeJS.Timeout | undefined;
    const gone = (): void => {
      this.active--;
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
      clearTimeout(sessionTimer);
    };

    const connection = new TunedConnection(this, socket, socketOptions, {
      greetingDelayMs: this.trusted.contains(ip) ? 0 : this.delayMs,
      maxErrors: this.gate.maxErrors,
      onGone: gone,
      extensions: this.extensions,
    });
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    if (this.gate.sessionMs) {
      sessionTimer = setTimeout(() => {
        const e = new PostinoError('SESSION_TIME_LIMIT', 'Session time limit reached, closing connection');
        connection.send(e.smtpCode, e.message, false);
      }, this.gate.sessionMs);
      sessionTimer.unref();
    }
    connection.init();
  }

  /** Sessions open from one address (for tests and status). */
  sessionsFrom(ip: string): number {
    return this.perIp.get(normalizeIp(ip)) ?? 0;
  }

  /** listen() with a promise; resolves to the bound port (tests listen on port 0). */
  listenAsync(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.listen(port, host, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting and waits for sessions to end (smtp-server closes idle ones after closeTimeout). */
  closeAsync(): Promise<void> {
    return new Promise((resolve) => this.close(() => resolve()));
  }
}
