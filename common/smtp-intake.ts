/*
 * smtp-intake.ts — the SMTP server side shared by the forwarder's intake and the
 * hosted listener: network allowlist at connect, SIZE and recipient limits, and
 * DATA streamed into a DurableQueue; `250` only after the synced commit.
 *
 * Standards: RFC 5321 (server), RFC 1870 (SIZE), RFC 3207 (STARTTLS),
 * RFC 3463 (enhanced codes: we print our own, see errors.ts).
 * Stage-specific policy (pause, accounts, quotas) plugs in through `policy`.
 *
 * Side effects: listens on a TCP port; writes to the queue's store.
 */
import { PassThrough, type Readable } from 'node:stream';
import type tls from 'node:tls';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import { NetworkList } from './cidr.js';
import type { DurableQueue } from './durable-queue.js';
import { PostinoError } from './errors.js';
import { TooLargeError } from './fsync.js';
import type { Logger } from './log.js';
import { headerBlockEnd, parseHeaderBlock, type HeaderField } from './mime-header.js';
import { PostinoSMTPServer } from './smtp-server.js';

/** What every stage records about a received message. */
export interface Envelope {
  mailFrom: string;
  rcptTo: string[];
  clientAddress: string;
  heloName: string;
  receivedAt: number;
  tls: boolean;
  authUser?: string;
}

export interface IntakePolicy {
  /** Refuse a connection (after the allowlist) by throwing a PostinoError. */
  onConnect?(session: SMTPServerSession): void;
  onMailFrom?(address: SMTPServerAddress, session: SMTPServerSession): void;
  onRcptTo?(address: SMTPServerAddress, session: SMTPServerSession): void;
}

export interface IntakeOptions<M> {
  name: string;
  host: string;
  port: number;
  maxSize: number;
  maxRecipients: number;
  greetingDelayMs: number;
  trustedNetworks: readonly string[];
  allowNetworks: readonly string[];
  idleTimeoutMs: number;
  /** TLS pair for STARTTLS; without it STARTTLS is not offered. */
  tls?: { key: string | Buffer; cert: string | Buffer } | undefined;
  queue: DurableQueue<M>;
  toMeta(envelope: Envelope, session: SMTPServerSession): M;
  policy?: IntakePolicy;
  log: Logger;
  /**
   * Checks the message's header block at the end of DATA, before the commit;
   * throwing a PostinoError refuses the message with its reply (the listener
   * refuses an unparseable X-Postino-Send-At with 550).
   */
  checkHeaders?(headers: HeaderField[]): void;
  /** Called after each durable accept (counters, rate estimates). */
  onAccepted?(queueId: string, size: number): void;
}

export interface Intake {
  port: number;
  server: PostinoSMTPServer;
  close(): Promise<void>;
  updateTls(pair: { key: string | Buffer; cert: string | Buffer }): void;
}

function run(cb: (err?: Error | null) => void, check: (() => void) | undefined): void {
  try {
    check?.();
    cb();
  } catch (e) {
    cb(e as Error);
  }
}

export function envelopeOf(session: SMTPServerSession): Envelope {
  const env: Envelope = {
    mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
    rcptTo: session.envelope.rcptTo.map((r) => r.address),
    clientAddress: session.remoteAddress,
    heloName: session.hostNameAppearsAs || '',
    receivedAt: Date.now(),
    tls: Boolean(session.secure),
  };
  if (session.user) env.authUser = String(session.user);
  return env;
}

/** A header block larger than this is not looked at by `checkHeaders` (nothing legitimate is that large). */
const MAX_CHECKED_HEADER_BYTES = 256 * 1024;

/**
 * Passes the stream through and keeps its first bytes up to the end of the
 * header block. Forwarded by hand rather than piped: when the queue stops
 * reading (size limit) and destroys `body`, the source must go on flowing to
 * its end, or smtp-server would never send the reply.
 */
function captureHead(stream: Readable): { body: Readable; head: () => Buffer } {
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  let closed = false;
  const body = new PassThrough();
  body.on('close', () => {
    closed = true;
    stream.resume(); // nobody reads any more: drain the rest
  });
  stream.on('data', (c: Buffer) => {
    if (!done) {
      chunks.push(c);
      size += c.length;
      if (size > MAX_CHECKED_HEADER_BYTES || headerBlockEnd(Buffer.concat(chunks)) !== -1) done = true;
    }
    if (closed) return;
    if (!body.write(c)) {
      stream.pause();
      body.once('drain', () => stream.resume());
    }
  });
  stream.on('end', () => {
    if (!closed) body.end();
  });
  stream.on('error', (e) => body.destroy(e));
  return {
    body,
    head: () => {
      const all = Buffer.concat(chunks);
      const end = headerBlockEnd(all);
      return end === -1 ? all.subarray(0, MAX_CHECKED_HEADER_BYTES) : all.subarray(0, end);
    },
  };
}

export async function startIntake<M>(o: IntakeOptions<M>): Promise<Intake> {
  const allow = new NetworkList(o.allowNetworks);
  const { queue, log } = o;

  async function accept(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const envelope = envelopeOf(session);
    const captured = o.checkHeaders ? captureHead(stream) : undefined;
    const prepared = await queue.prepare({ meta: o.toMeta(envelope, session), body: captured?.body ?? stream, maxBytes: o.maxSize });
    if (stream.sizeExceeded) {
      await prepared.discard();
      throw new TooLargeError(o.maxSize);
    }
    if (captured) {
      try {
        o.checkHeaders!(parseHeaderBlock(captured.head()));
      } catch (e) {
        await prepared.discard();
        throw e;
      }
    }
    try {
      await queue.commitPrepared([prepared]);
    } catch (e) {
      await prepared.discard();
      throw e;
    }
    o.onAccepted?.(prepared.record.id, prepared.record.body.size);
    log.info(
      { event: 'accepted', queueId: prepared.record.id, session: session.id, from: envelope.mailFrom, rcpt: envelope.rcptTo.length, size: prepared.record.body.size },
      'message queued',
    );
    return prepared.record.id;
  }

  const options: SMTPServerOptions = {
    name: o.name,
    banner: 'Postino ESMTP',
    size: o.maxSize,
    maxRecipients: o.maxRecipients,
    authOptional: true,
    disabledCommands: o.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    hideENHANCEDSTATUSCODES: true,
    disableReverseLookup: true,
    socketTimeout: o.idleTimeoutMs,
    closeTimeout: 10_000,
    logger: false,
    ...(o.tls ? { key: o.tls.key, cert: o.tls.cert, minVersion: 'TLSv1.2' as tls.SecureVersion } : {}),
    onConnect(session, cb) {
      if (!allow.contains(session.remoteAddress)) {
        log.warn({ event: 'refused', client: session.remoteAddress }, 'connection from a network not allowed');
        return cb(new PostinoError('NOT_ALLOWED_NETWORK', `Access denied for ${session.remoteAddress}`));
      }
      run(cb, o.policy?.onConnect && (() => o.policy!.onConnect!(session)));
    },
    onMailFrom(address, session, cb) {
      run(cb, o.policy?.onMailFrom && (() => o.policy!.onMailFrom!(address, session)));
    },
    onRcptTo(address, session, cb) {
      run(cb, o.policy?.onRcptTo && (() => o.policy!.onRcptTo!(address, session)));
    },
    onData(stream, session, cb) {
      accept(stream, session).then(
        (id) => cb(null, `2.0.0 Ok: queued as ${id}`),
        (err: unknown) => {
          stream.resume(); // discard the rest so the session stays usable
          if (err instanceof TooLargeError) return cb(new PostinoError('MESSAGE_TOO_BIG', `Message exceeds fixed maximum message size of ${o.maxSize} bytes`));
          if (err instanceof PostinoError) return cb(err);
          log.error({ err, session: session.id }, 'spool write failed');
          cb(new PostinoError('SPOOL_WRITE_FAILED', 'Cannot store the message now, try again later'));
        },
      );
    },
  };
  const server = new PostinoSMTPServer(options, { greetingDelayMs: o.greetingDelayMs, trustedNetworks: o.trustedNetworks });
  server.on('error', (err: Error) => log.warn({ err: { message: err.message } }, 'smtp session error'));
  const port = await server.listenAsync(o.port, o.host);
  log.info({ event: 'listening', what: o.name, address: o.host, port }, `${o.name} SMTP listening on ${o.host}:${port}`);
  return {
    port,
    server,
    close: () => server.closeAsync(),
    updateTls: (pair) => server.updateSecureContext({ key: pair.key, cert: pair.cert }),
  };
}
