/*
 * smtp-intake.ts — the SMTP server side shared by the forwarder's intake and the
 * hosted listener: network allowlist and connection caps at connect (see
 * smtp-server.ts: refused before any parser exists), SIZE and recipient limits,
 * optional strict DATA checks (strict-data.ts), optional AUTH PLAIN/LOGIN,
 * optional effectively-once dedupe by X-Postino-Spool-Id (spool-id.ts), and
 * DATA streamed into a DurableQueue; `250` only after the synced commit.
 *
 * Standards: RFC 5321 (server), RFC 1870 (SIZE), RFC 3207 (STARTTLS),
 * RFC 3463 (enhanced codes: we print our own, see errors.ts), RFC 6531
 * (SMTPUTF8), RFC 4954 (AUTH= on MAIL), RFC 3461 (DSN: with `dsn`, NOTIFY,
 * ORCPT, RET and ENVID are syntax-checked by smtp-server, 501, and recorded);
 * MAIL/RCPT parameters of anything else, REQUIRETLS included, get 555 (smtp-server.ts).
 * Stage-specific policy (pause, accounts, quotas) plugs in through `policy`.
 *
 * Side effects: listens on a TCP port; writes to the queue's store.
 */
import type tls from 'node:tls';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server';
import { NetworkList } from './cidr.js';
import type { DurableQueue, Prepared } from './durable-queue.js';
import { PostinoError } from './errors.js';
import { TooLargeError } from './fsync.js';
import { linesWritten, type Logger } from './log.js';
import { headerBlockEnd, parseHeaderBlock, type HeaderField } from './mime-header.js';
import { BASE_EXTENSIONS, PostinoSMTPServer, type ConnectionGate, type SmtpExtensions } from './smtp-server.js';
import { isSpoolId, SpoolIdFilter, type SeenSpoolIds } from './spool-id.js';
import type { SharedSpoolIds } from './spool-id-postgres.js';
import type { BatchOp } from './store.js';
import { stagedBatches, type DataStage } from './stream-batches.js';
import { StrictDataCheck, type StrictDataOptions } from './strict-data.js';
import { TLS_CIPHERS } from './tls-ciphers.js';

/** What every stage records about a received message. */
export interface Envelope {
  mailFrom: string;
  rcptTo: string[];
  clientAddress: string;
  heloName: string;
  receivedAt: number;
  tls: boolean;
  authUser?: string;
  /** RFC 3461 parameters as the client gave them (only on an intake with `dsn`, only when any was given). */
  dsn?: EnvelopeDsn;
}

export interface EnvelopeDsn {
  ret?: 'FULL' | 'HDRS';
  /** ENVID, xtext-decoded. */
  envid?: string;
  /** Per recipient address (as in rcptTo): NOTIFY values (upper case) and ORCPT (`rfc822;addr`, xtext-decoded). */
  rcpt?: Record<string, { notify?: string[]; orcpt?: string }>;
}

/** What the strict DATA check found in a message's bytes (strict-data.ts). */
export interface DataFacts {
  /** Whether `{{` occurs anywhere in it; undefined when the check does not look (no strictData, or bare newlines allowed). */
  doubleBrace: boolean | undefined;
  /**
   * Whether a line of it starts with a dot; undefined as above. When false, the message (which
   * passed the check: no bare CR or LF) has nothing to dot-stuff when it is sent on.
   */
  dotLine: boolean | undefined;
}

export interface IntakePolicy {
  /** Refuse a connection (after the allowlist) by throwing a PostinoError. */
  onConnect?(session: SMTPServerSession): void;
  onMailFrom?(address: SMTPServerAddress, session: SMTPServerSession): void;
  /** May look something up first (the bounce intake checks a VERP token against its copy). */
  onRcptTo?(address: SMTPServerAddress, session: SMTPServerSession): void | Promise<void>;
  /**
   * Called once the message is on disk, just before the commit: may refuse it
   * (throw a PostinoError, e.g. a quota) or add ops to the same synced batch.
   * `done(committed)` is called after the commit succeeded or failed.
   */
  beforeCommit?(session: SMTPServerSession): { ops: BatchOp[]; done(committed: boolean): void } | Promise<{ ops: BatchOp[]; done(committed: boolean): void }>;
}

/** SMTP AUTH (RFC 4954) PLAIN and LOGIN; the stage decides who is who. */
export interface IntakeAuth {
  /** Offer AUTH before STARTTLS (credentials in clear): to every client, or to those the function names. */
  allowInsecure: boolean | ((clientIp: string) => boolean);
  /** Resolves to the identity to record, or rejects with a PostinoError (535, 454, 538). */
  verify(username: string, password: string, session: SMTPServerSession): Promise<string>;
}

export interface IntakeOptions<M> {
  name: string;
  host: string;
  port: number;
  maxSize: number;
  maxRecipients: number;
  greetingDelayMs: number;
  trustedNetworks: readonly string[];
  /** Who may connect; refused with 554 5.7.1 before a session exists. Ignored when `gate.admit` is set. */
  allowNetworks?: readonly string[];
  /** Connection caps, session limit, error budget, PROXY protocol (see smtp-server.ts). */
  gate?: Partial<ConnectionGate>;
  /** Refuse bare CR/LF and lines over 998 octets in DATA with 550 5.6.0. */
  strictData?: boolean | StrictDataOptions;
  auth?: IntakeAuth;
  /** With `auth`: refuse MAIL FROM until the client authenticated. */
  authRequired?: boolean | undefined;
  /**
   * Effectively-once hop (spool-id.ts): strip X-Postino-Spool-Id, and answer a
   * message whose id was already accepted in the same scope with 250 without
   * enqueuing it again. `scope` names whose ids these are (the listener: the
   * session's account); an id not of the forwarder's shape is ignored.
   * `forwarded` amends the record of a message that carried a valid id (the
   * listener notes that a forwarder relayed it: the engine's DSNs, engine/delivery/dsn-notices.ts).
   */
  spoolIds?: { seen: SeenSpoolIds; scope(session: SMTPServerSession): string; forwarded?(meta: M): M; shared?: SharedSpoolIds | undefined } | undefined;
  idleTimeoutMs: number;
  /**
   * Offer DSN (RFC 3461): NOTIFY/ORCPT on RCPT, RET/ENVID on MAIL, recorded in
   * `Envelope.dsn` for the stage's own DSNs. Off: the parameters get 555.
   */
  dsn?: boolean;
  /** TLS pair for STARTTLS; without it STARTTLS is not offered. */
  tls?: { key: string | Buffer; cert: string | Buffer } | undefined;
  queue: DurableQueue<M>;
  /**
   * The queue record's meta, made once DATA has been read; `data` holds what the strict
   * check saw in it (undefined answers where it does not look).
   */
  toMeta(envelope: Envelope, session: SMTPServerSession, data: DataFacts): M;
  policy?: IntakePolicy;
  log: Logger;
  /**
   * Checks the message's header block at the end of DATA, before the commit;
   * throwing a PostinoError refuses the message with its reply (the listener
   * refuses an unparseable X-Postino-Send-At with 550).
   */
  checkHeaders?(headers: HeaderField[]): void;
  /** Called after each durable accept (counters, rate estimates). */
  onAccepted?(queueId: string, size: number, meta: M): void;
  /** Extra fields for the `accepted` log line (the listener adds the account). */
  logFields?(meta: M): Record<string, unknown>;
}

export interface Intake {
  port: number;
  server: PostinoSMTPServer;
  close(): Promise<void>;
  updateTls(pair: { key: string | Buffer; cert: string | Buffer }): void;
}

function run(cb: (err?: Error | null) => void, check: (() => void | Promise<void>) | undefined): void {
  try {
    const pending = check?.();
    if (pending) pending.then(() => cb(), (e: unknown) => cb(e as Error));
    else cb();
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
  const dsn = dsnOf(session);
  if (dsn) env.dsn = dsn;
  return env;
}

function dsnOf(session: SMTPServerSession): EnvelopeDsn | undefined {
  const d: EnvelopeDsn = {};
  const e = session.envelope.dsn;
  if (e?.ret === 'FULL' || e?.ret === 'HDRS') d.ret = e.ret;
  if (e?.envid) d.envid = e.envid;
  for (const r of session.envelope.rcptTo) {
    if (!r.dsn?.notify && !r.dsn?.orcpt) continue;
    d.rcpt ??= {};
    d.rcpt[r.address] = { ...(r.dsn.notify ? { notify: r.dsn.notify } : {}), ...(r.dsn.orcpt ? { orcpt: r.dsn.orcpt } : {}) };
  }
  return Object.keys(d).length > 0 ? d : undefined;
}

/** A connection flood must not become a log flood: refusals are logged at most this often. */
const REFUSED_LOG_INTERVAL_MS = 1_000;
/** A header block larger than this is not looked at by `checkHeaders` (nothing legitimate is that large). */
const MAX_CHECKED_HEADER_BYTES = 256 * 1024;

/** Passes DATA through and keeps its first bytes, up to the end of the header block, for `checkHeaders`. */
class HeaderCapture implements DataStage {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private done = false;

  push(chunk: Buffer): Buffer {
    if (!this.done) {
      this.chunks.push(chunk);
      this.size += chunk.length;
      if (this.size > MAX_CHECKED_HEADER_BYTES || headerBlockEnd(this.all()) !== -1) this.done = true;
    }
    return chunk;
  }

  end(): undefined {
    return undefined;
  }

  /** What was kept, as one Buffer: the chunk itself when it is one (a 64 KiB read is not copied to look for an empty line). */
  private all(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
  }

  head(): Buffer {
    const all = this.all();
    const end = headerBlockEnd(all);
    return end === -1 ? all.subarray(0, MAX_CHECKED_HEADER_BYTES) : all.subarray(0, end);
  }
}

export async function startIntake<M>(o: IntakeOptions<M>): Promise<Intake> {
  const allow = o.allowNetworks ? new NetworkList(o.allowNetworks) : undefined;
  const { queue, log } = o;

  /** The header's value if it is one the forwarder could have minted; anything else means a new message. */
  function dedupeId(value: string | undefined, session: SMTPServerSession): string | undefined {
    if (value === undefined || isSpoolId(value)) return value;
    log.info({ event: 'spool-id-ignored', session: session.id, client: session.remoteAddress }, 'X-Postino-Spool-Id not of the forwarder\'s shape: stripped, message treated as new');
    return undefined;
  }

  async function accept(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const envelope = envelopeOf(session);
    const check = o.strictData ? new StrictDataCheck(o.strictData === true ? {} : o.strictData) : undefined;
    const filter = o.spoolIds ? new SpoolIdFilter() : undefined;
    const capture = o.checkHeaders ? new HeaderCapture() : undefined;
    // DATA → strict checks (raw bytes) → spool-id filter → header capture → queue, each stage
    // called on the chunks as they come (stream-batches.ts).
    const stages = [check, filter, capture].filter((t): t is NonNullable<typeof t> => t !== undefined);
    const body = stagedBatches(stream, stages);
    // Made once the body has been read: what the checks found in it goes into the record as
    // it is first written, not by a second put of the meta (one JSON and one LevelDB value
    // fewer per message).
    const metaOnceRead = (): M => {
      const meta = o.toMeta(envelope, session, { doubleBrace: check?.doubleBrace, dotLine: check?.dotLine });
      const id = filter?.spoolId;
      // A forwarder relayed it (its spool id came with it, of the forwarder's shape: dedupeId below).
      return id !== undefined && isSpoolId(id) && o.spoolIds?.forwarded ? o.spoolIds.forwarded(meta) : meta;
    };
    let prepared: Prepared<M>;
    try {
      prepared = await queue.prepare({ meta: metaOnceRead, body, maxBytes: o.maxSize });
    } catch (e) {
      // The queue stopped reading: the rest of DATA is read and dropped, so the session
      // reaches the final dot and can answer (the stages' reader detaches first).
      await body.return();
      stream.resume();
      throw e;
    }
    if (stream.sizeExceeded) {
      await prepared.discard();
      throw new TooLargeError(o.maxSize);
    }
    if (check?.violation) {
      await prepared.discard();
      throw check.violation;
    }
    if (capture) {
      try {
        o.checkHeaders!(parseHeaderBlock(capture.head()));
      } catch (e) {
        await prepared.discard();
        throw e;
      }
    }
    const spoolId = dedupeId(filter?.spoolId, session);
    const seen = o.spoolIds?.seen;
    const scope = spoolId ? o.spoolIds!.scope(session) : '';
    if (spoolId && seen && !seen.begin(scope, spoolId)) {
      await prepared.discard();
      throw new PostinoError('DUPLICATE_IN_PROGRESS', `Message ${spoolId} is being stored by another session, try again later`);
    }
    let hook: { ops: BatchOp[]; done(committed: boolean): void } | undefined;
    // With several nodes (storage.postgres), the id is claimed for every node first (spool-id-postgres.ts).
    const shared = spoolId ? o.spoolIds?.shared : undefined;
    let claimed = false;
    try {
      let earlier = spoolId ? await seen!.lookup(scope, spoolId) : undefined;
      if (!earlier && shared) {
        const c = await shared.claim(scope, spoolId!, prepared.record.id);
        if (c.kind === 'busy') throw new PostinoError('DUPLICATE_IN_PROGRESS', `Message ${spoolId} is being stored by another node, try again later`);
        if (c.kind === 'earlier') earlier = c.queueId;
        claimed = c.kind === 'new';
      }
      if (earlier) {
        await prepared.discard();
        log.info({ event: 'duplicate', queueId: earlier, spoolId, session: session.id }, 'already queued: retry of an accepted message not enqueued again');
        return `${earlier} (already queued)`;
      }
      hook = await o.policy?.beforeCommit?.(session);
      const dedupeOps = spoolId ? seen!.rememberOps(scope, spoolId, prepared.record.id) : [];
      await queue.commitPrepared([prepared], [...dedupeOps, ...(hook?.ops ?? [])]);
      hook?.done(true);
      // Before the 250: a retry through another node from now on finds it.
      if (shared) await shared.confirm(scope, spoolId!, prepared.record.id);
    } catch (e) {
      hook?.done(false);
      if (claimed) await shared!.release(scope, spoolId!);
      await prepared.discard();
      throw e;
    } finally {
      if (spoolId) seen!.end(scope, spoolId);
    }
    const meta = prepared.record.meta;
    o.onAccepted?.(prepared.record.id, prepared.record.body.size, meta);
    log.info(
      {
        event: 'accepted',
        queueId: prepared.record.id,
        session: session.id,
        ...o.logFields?.(meta),
        client: envelope.clientAddress,
        tls: envelope.tls,
        // As Postfix's smtpd logs the TLS session it established: what the client and we agreed on.
        ...(session.tlsOptions ? { cipher: session.tlsOptions.name } : {}),
        ...(envelope.authUser ? { authUser: envelope.authUser } : {}),
        from: envelope.mailFrom,
        rcpt: envelope.rcptTo.length,
        size: prepared.record.body.size,
        ...(spoolId ? { spoolId } : {}),
      },
      'message queued',
    );
    // The line in the kernel's hands before the 250 (log.ts): written with the rest of this turn's.
    await linesWritten();
    return prepared.record.id;
  }

  const insecure = o.auth?.allowInsecure ?? false;
  const authBeforeTls = typeof insecure === 'function' ? insecure : undefined;

  function onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user?: unknown }) => void): void {
    if (!o.auth) return cb(new PostinoError('AUTH_FAILED', 'Authentication not available'));
    // AUTH in clear from a client it was not offered to: refused before the password is looked at.
    if (!session.secure && authBeforeTls && !authBeforeTls(session.remoteAddress)) return cb(new PostinoError('AUTH_NEEDS_TLS', 'Must issue a STARTTLS command first'));
    o.auth.verify(auth.username ?? '', auth.password ?? '', session).then(
      (user) => cb(null, { user }),
      (err: unknown) => cb(err instanceof PostinoError ? err : new PostinoError('AUTH_FAILED', 'Authentication failed')),
    );
  }

  let refusedLoggedAt = 0;
  let refusedSuppressed = 0;
  const gate: ConnectionGate = {
    maxConnections: 0,
    maxConnectionsPerIp: 0,
    sessionMs: 0,
    maxErrors: 0,
    proxyFrom: [],
    ...o.gate,
    admit:
      o.gate?.admit ??
      ((ip) => (allow && !allow.contains(ip) ? new PostinoError('NOT_ALLOWED_NETWORK', `Access denied for ${ip}`) : undefined)),
    onRefused: (ip, err) => {
      // Under a flood, one line per REFUSED_LOG_INTERVAL_MS with the count of the others.
      const now = Date.now();
      if (now - refusedLoggedAt < REFUSED_LOG_INTERVAL_MS) {
        refusedSuppressed++;
        return;
      }
      log.warn({ event: 'refused', client: ip, code: err.smtpCode, reason: err.reason, alsoRefused: refusedSuppressed }, 'connection refused');
      refusedLoggedAt = now;
      refusedSuppressed = 0;
    },
  };

  const options: SMTPServerOptions = {
    name: o.name,
    banner: 'Postino ESMTP',
    size: o.maxSize,
    maxRecipients: o.maxRecipients,
    authOptional: true,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: insecure !== false,
    disabledCommands: [...(o.auth ? [] : ['AUTH']), ...(o.tls ? [] : ['STARTTLS'])],
    // Enhanced status codes on every reply (RFC 2034); ours ride in the reply text (see smtp-server.ts).
    hideENHANCEDSTATUSCODES: false,
    // DSN and REQUIRETLS are advertised by PostinoSMTPServer from `extensions` below: DSN where the stage
    // carries NOTIFY/RET/ENVID/ORCPT into DSNs (forwarder and listener); REQUIRETLS (RFC 8689) never, it would be
    // a TLS promise for every later hop.
    disableReverseLookup: true,
    socketTimeout: o.idleTimeoutMs,
    closeTimeout: 10_000,
    logger: false,
    ...(o.tls ? { key: o.tls.key, cert: o.tls.cert, minVersion: 'TLSv1.2' as tls.SecureVersion, ciphers: TLS_CIPHERS } : {}),
    onConnect(session, cb) {
      run(cb, o.policy?.onConnect && (() => o.policy!.onConnect!(session)));
    },
    onAuth,
    onMailFrom(address, session, cb) {
      if (o.auth && o.authRequired && !session.user) return cb(new PostinoError('AUTH_REQUIRED', 'Authentication required'));
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
          if (err instanceof PostinoError) {
            log.info({ event: 'rejected', session: session.id, client: session.remoteAddress, code: err.smtpCode, reason: err.reason }, 'message refused');
            return cb(err);
          }
          // smtp-server destroys DATA's stream with this code when the client goes away mid-message:
          // nothing was acknowledged, what the queue had written is gone with the failed prepare.
          if ((err as { code?: unknown } | null)?.code === 'ECONNECTION') {
            log.info({ event: 'aborted', session: session.id, client: session.remoteAddress }, 'client closed the connection before the end of DATA');
            return cb(err as Error);
          }
          log.error({ err, session: session.id }, 'spool write failed');
          cb(new PostinoError('SPOOL_WRITE_FAILED', 'Cannot store the message now, try again later'));
        },
      );
    },
  };
  // RFC 4954 5: MAIL FROM's AUTH=<identity> parameter belongs to the AUTH extension.
  const extensions: SmtpExtensions = {
    mailParameters: [...BASE_EXTENSIONS.mailParameters, ...(o.auth ? ['AUTH'] : []), ...(o.dsn ? ['RET', 'ENVID'] : [])],
    rcptParameters: [...BASE_EXTENSIONS.rcptParameters, ...(o.dsn ? ['NOTIFY', 'ORCPT'] : [])],
    authBeforeTls,
  };
  const server = new PostinoSMTPServer(options, { greetingDelayMs: o.greetingDelayMs, trustedNetworks: o.trustedNetworks }, gate, extensions);
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
