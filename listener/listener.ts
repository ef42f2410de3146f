/*
 * listener.ts — the hosted SMTP entry: per-account allowlist, connection caps,
 * STARTTLS, AUTH, strict DATA, sender domains, quotas, and intake into the
 * engine's durable intake queue (`250` only after the synced write, with the
 * account id, client IP, TLS state and auth identity recorded on the message).
 *
 * Standards: RFC 5321, RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 4616 (PLAIN),
 * RFC 1870 (SIZE), RFC 3463 (enhanced status codes), RFC 3461 (DSN: NOTIFY,
 * ORCPT, RET, ENVID taken and recorded in the intake record), HAProxy PROXY protocol v1.
 *
 * Config: the `listener` section (node-wide: address, TLS pair, caps, limits)
 * and `accounts[]` (networks, `listener` policy); see common/config.ts.
 * Pieces: accounts.ts (who is who), auth-failures.ts (AUTH rate limit),
 * quota.ts (hour/day counters), common/smtp-server.ts (the connection gate),
 * common/strict-data.ts (bare CR/LF, long lines).
 *
 * Accounts change while running (accounts API, config reload: an AccountsSnapshot):
 * the gate and each new connection use the new table at once; a session keeps
 * the table it connected under until it ends. AUTH is offered or not by what
 * the accounts had at start (smtp-server fixes its command set then).
 *
 * Side effects: listens on a TCP port; reads the TLS pair at start and on
 * `reloadTls()` (SIGHUP: sessions in progress keep their TLS state); writes the
 * intake queue and the quota counters in one synced batch.
 * Effectively once: with `spoolIds`, X-Postino-Spool-Id is stripped and a
 * retry of an id accepted within listener.spoolIdTtlSeconds (7 days) is
 * answered 250 without a second enqueue (common/spool-id.ts).
 */
import fs from 'node:fs';
import type { SMTPServerSession } from 'smtp-server';
import { domainAllowed, domainOf } from '../common/address.js';
import type { AccountConfig, ListenerConfig } from '../common/config.js';
import type { DurableQueue } from '../common/durable-queue.js';
import { PostinoError } from '../common/errors.js';
import type { IntakeMeta } from '../common/intake-record.js';
import type { Logger } from '../common/log.js';
import { ensureDevTls, secretsDir } from '../common/secrets.js';
import { controlHeaderProblem, type ControlLimits } from '../common/control-headers.js';
import { startIntake, type Intake } from '../common/smtp-intake.js';
import type { SeenSpoolIds } from '../common/spool-id.js';
import type { SharedSpoolIds } from '../common/spool-id-postgres.js';
import { AccountsSnapshot } from '../common/accounts-snapshot.js';
import { AccountTable } from './accounts.js';
import { AuthFailures } from './auth-failures.js';
import { Quotas, type QuotaCounter, type QuotaLimits } from './quota.js';

export async function listenerTls(cfg: ListenerConfig, dataDir: string): Promise<{ key: Buffer; cert: Buffer }> {
  const files = cfg.tls.certFile && cfg.tls.keyFile ? { certFile: cfg.tls.certFile, keyFile: cfg.tls.keyFile } : await ensureDevTls(secretsDir(dataDir));
  return { key: fs.readFileSync(files.keyFile), cert: fs.readFileSync(files.certFile) };
}

export interface Listener extends Intake {
  /** The account table new connections get (swapped when the accounts change). */
  readonly accounts: AccountTable;
  quotas: QuotaCounter;
  /** Re-reads the certificate and key (SIGHUP); new handshakes use them, open sessions are untouched. */
  reloadTls(): Promise<void>;
}

export interface ListenerOptions {
  config: ListenerConfig;
  /** Fixed accounts, or the node's live snapshot (accounts API, reload): see liveTables below. */
  accounts: readonly AccountConfig[] | AccountsSnapshot;
  /** Where the development TLS pair lives when `listener.tls` names none. */
  dataDir: string;
  /** The engine's intake queue. */
  queue: DurableQueue<IntakeMeta>;
  log: Logger;
  /** Quota and AUTH-failure windows; default Date.now. */
  now?: () => number;
  /** Spool ids already accepted, to answer a retried message `250 (already queued)`. */
  spoolIds?: SeenSpoolIds | undefined;
  /** The same, known to every node (storage.postgres: common/spool-id-postgres.ts). */
  sharedSpoolIds?: SharedSpoolIds | undefined;
  /** Range limits of the control headers (engine.maxScheduleDays); the defaults otherwise. */
  controlLimits?: ControlLimits;
  /** Where quotas are counted; default this node's LevelDB (quota.ts), or PostgreSQL (quota-postgres.ts). */
  quotas?: ((limits: QuotaLimits[], now: () => number) => QuotaCounter | Promise<QuotaCounter>) | undefined;
}

export async function startListener(o: ListenerOptions): Promise<Listener> {
  const { config: cfg, accounts: accountConfigs, dataDir, queue, log, now = Date.now, spoolIds } = o;
  const tls = await listenerTls(cfg, dataDir);
  const live = accountConfigs instanceof AccountsSnapshot ? accountConfigs : new AccountsSnapshot([...accountConfigs]);
  const quotaLimits = (list: readonly AccountConfig[]) => list.map((a) => ({ id: a.id, perHour: a.listener.messagesPerHour, perDay: a.listener.messagesPerDay, unit: a.listener.quotaUnit }));
  const quotas = o.quotas ? await o.quotas(quotaLimits(live.current), now) : await Quotas.open(queue.store, quotaLimits(live.current), now);
  // One table per accounts snapshot. A session takes the table current when it connects and keeps
  // it to the end (its account, AUTH and sender domains are those it started with); the gate and
  // every new connection see a swap at once.
  let current = new AccountTable(live.current);
  const bySession = new WeakMap<SMTPServerSession, AccountTable>();
  const tableOf = (session: SMTPServerSession): AccountTable => {
    let t = bySession.get(session);
    if (!t) bySession.set(session, (t = current));
    return t;
  };
  const authAtStart = current.anyAuth;
  live.onSwap((list) => {
    current = new AccountTable(list);
    if (current.anyAuth && !authAtStart) log.warn({ event: 'auth-needs-restart' }, 'an account has AUTH users now, but this listener started without any and does not offer AUTH until it restarts');
    quotas.setLimits(quotaLimits(list)).catch((err: unknown) => log.error({ err }, 'quota limits not updated'));
    log.info({ event: 'accounts-swapped', version: live.version, accounts: list.length }, 'accounts changed: new connections use them');
  });
  // The table a call without a session (the gate, tests) uses.
  const accounts = { get table(): AccountTable { return current; } };
  const authFailures = new AuthFailures(cfg.maxAuthFailures, cfg.authFailureWindowSeconds * 1000, now);

  const intake = await startIntake<IntakeMeta>({
    name: 'listener',
    host: cfg.host,
    port: cfg.port,
    maxSize: cfg.maxSize,
    maxRecipients: cfg.maxRecipients,
    greetingDelayMs: cfg.greetingDelayMs,
    trustedNetworks: cfg.trustedNetworks,
    idleTimeoutMs: cfg.idleTimeoutSeconds * 1000,
    gate: {
      admit: (ip) => current.admit(ip),
      maxConnections: cfg.maxConnections,
      maxConnectionsPerIp: cfg.maxConnectionsPerIp,
      sessionMs: cfg.sessionTimeoutSeconds * 1000,
      maxErrors: cfg.maxErrors,
      proxyFrom: cfg.proxyProtocolFrom,
    },
    strictData: true,
    tls,
    queue,
    spoolIds: spoolIds && { seen: spoolIds, scope: (session) => tableOf(session).accountOf(session).id, forwarded: (meta) => ({ ...meta, forwarded: true }), shared: o.sharedSpoolIds },
    // RFC 3461: NOTIFY/ORCPT/RET/ENVID recorded with the message, carried by the engine into each copy's DSNs.
    dsn: true,
    ...(authAtStart
      ? {
          auth: {
            allowInsecure: (ip) => current.insecureAuthFrom(ip),
            async verify(username, password, session) {
              const ip = session.remoteAddress;
              if (authFailures.blocked(ip)) throw new PostinoError('AUTH_RATE_LIMITED', 'Too many failed authentication attempts, try again later');
              try {
                const a = await tableOf(session).authenticate(username, password, session);
                log.info({ event: 'authenticated', session: session.id, client: ip, account: a.id, user: username }, 'authenticated');
                return username;
              } catch (e) {
                if (e instanceof PostinoError && e.code === 'AUTH_FAILED') {
                  authFailures.fail(ip);
                  log.warn({ event: 'auth-failed', session: session.id, client: ip, user: username }, 'authentication failed');
                }
                throw e;
              }
            },
          },
        }
      : {}),
    // What the strict DATA check found (it refused anything with a bare CR or LF): see IntakeMeta.
    toMeta: (envelope, session, data) => ({
      envelope,
      account: tableOf(session).accountOf(session).id,
      ...(data.doubleBrace === false ? { noDoubleBrace: true as const } : {}),
      ...(data.dotLine === false ? { cleanLines: true as const } : {}),
    }),
    policy: {
      onConnect(session) {
        tableOf(session);
      },
      onMailFrom(address, session) {
        const account = tableOf(session).accountOf(session);
        if (account.policy.requireTls && !session.secure) throw new PostinoError('TLS_REQUIRED', 'Must issue a STARTTLS command first');
        if (account.policy.senderDomains.length > 0 && !domainAllowed(domainOf(address.address), account.policy.senderDomains)) {
          throw new PostinoError('SENDER_NOT_ALLOWED', `Sender <${address.address}> is not allowed for account ${account.id}`);
        }
        quotas.check(account.id);
      },
      onRcptTo(_address, session) {
        const account = tableOf(session).accountOf(session);
        if (session.envelope.rcptTo.length >= account.policy.maxRecipients) throw new PostinoError('TOO_MANY_RECIPIENTS', 'Too many recipients');
      },
      beforeCommit(session) {
        return quotas.reserve(tableOf(session).accountOf(session).id, session.envelope.rcptTo.length);
      },
    },
    logFields: (meta) => ({ account: meta.account }),
    // Every control header parsed and range-checked here, by the validator the rewrap uses too,
    // so nothing acknowledged with 250 can make the rewrap throw later (common/control-headers.ts).
    checkHeaders(headers) {
      const problem = controlHeaderProblem(headers, now(), o.controlLimits);
      if (problem) throw new PostinoError('BAD_MESSAGE', problem);
    },
    log,
  });

  return {
    ...intake,
    get accounts() {
      return accounts.table;
    },
    quotas,
    async reloadTls() {
      const pair = await listenerTls(cfg, dataDir);
      intake.updateTls(pair);
      log.info({ event: 'tls-reloaded' }, 'TLS certificate reloaded');
    },
  };
}
