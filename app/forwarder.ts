/*
 * forwarder.ts — the appliance: SMTP intake → spool → relay worker → hosted
 * listener, plus the kill-switch and the admin API.
 *
 * Data: <data>/forwarder/{db,blobs}; blob files no spool record names are
 * removed at start (common/orphan-blobs.ts). Config: the `forwarder` section.
 * Intake: STARTTLS with forwarder.smtp.tls (none by default; `up` sets the dev
 * pair), required with forwarder.smtp.requireTls (default false).
 * Relaying: nodemailer pool (relay.maxConnections connections, each reused for
 * relay.messagesPerConnection messages), at most relay.maxMessagesPerSecond
 * started per second (token bucket), a trickle (~100/s) while apps saturate the
 * event loop (forwarder/intake-first.ts, relay.yieldToIntakeSeconds; not under `up`);
 * every message carries X-Postino-Spool-Id (spool-id.ts) so the listener can
 * drop a retry of a copy it already holds.
 * Permanent failures become DSNs to the sender, spooled and relayed like any
 * other message (common/dsn.ts). An unreachable listener is a state of the relay
 * (common/relay-health.ts): the spool holds, the listener is probed on
 * relay.probeScheduleSeconds, and the held mail leaves when a probe succeeds. When the spool drains, LevelDB is compacted.
 * Reload (SIGHUP, POST /reload on the admin API, `postino forwarder reload`):
 * the file is read and validated again; smtp.allowNetworks, smtp.auth.users
 * (when AUTH was on at start), relay.urls and relay.maxMessagesPerSecond take
 * effect for the next connection and the next message; the spool and the relay
 * sessions in flight are untouched (forwarder/relay-switch.ts). Other changed
 * keys are named as needing a restart; a bad file changes nothing.
 * Shutdown: stop SMTP intake (sessions in DATA finish), stop relaying (sends in
 * progress finish), close the admin API, close LevelDB.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DurableQueue, type QueueRecord } from '../common/durable-queue.js';
import { PostinoError } from '../common/errors.js';
import { listenHttp } from '../common/http-server.js';
import { IdleCompactor } from '../forwarder/idle-compactor.js';
import { sweepOrphanBlobs } from '../common/orphan-blobs.js';
import { RelayWorker } from '../forwarder/relay-worker.js';
import type { Component, Runtime } from '../common/runtime.js';
import { redactUrl } from '../common/redact.js';
import { resolveSecret, sameSecret } from '../common/secrets.js';
import { RelayClient, type RecipientFailure, type SmtpReply } from '../common/smtp-client.js';
import { startIntake } from '../common/smtp-intake.js';
import { stampSpoolId } from '../common/spool-id.js';
import { Store } from '../common/store.js';
import { TokenBucket } from '../common/token-bucket.js';
import { WorkerLoop } from '../common/worker-loop.js';
import { NetworkList } from '../common/cidr.js';
import type { Config, ForwarderConfig } from '../common/config.js';
import { answerFor, changedPaths, refused, tryReload, type ReloadAnswer } from '../common/config-reload.js';
import { RelaySwitch } from '../forwarder/relay-switch.js';
import { createAdminApi, queueGauges, triedAndDeferred, type ForwarderStatusSource } from '../forwarder/admin-api.js';
import { buildDsn, MAX_RETURNED_MESSAGE_BYTES, readHeaderSection, wantsFailureNotice, type DsnInput } from '../common/dsn.js';
import { RelayPause } from '../forwarder/relay-pause.js';
import { IntakeFirst, SAMPLE_MS } from '../forwarder/intake-first.js';
import { ForwarderMetrics } from '../forwarder/metrics.js';
import type { SpoolMeta } from '../forwarder/spool-record.js';

/** A relay transaction never legitimately takes this long; past it the message is retried. */
const RELAY_VISIBILITY_MS = 10 * 60_000;
/**
 * Handlers per upstream connection: enough to keep the pool busy between messages, and a
 * send waiting for each session when its dot goes out, so the next envelope leaves with it
 * (smtp-pool.ts).
 */
const HANDLERS_PER_CONNECTION = 4;
/** Token bucket depth in seconds of rate: a tenth of a second, so the cap holds over short windows too. */
const BURST_SECONDS = 0.1;

export interface Forwarder extends Component {
  smtpPort: number;
  adminPort: number;
  spool: DurableQueue<SpoolMeta>;
}

/** The keys a running forwarder takes from a reload (see the header). */
const LIVE_KEYS = ['forwarder.smtp.allowNetworks', 'forwarder.smtp.auth.users', 'forwarder.relay.urls', 'forwarder.relay.maxMessagesPerSecond'];

function passwordsOf(cfg: ForwarderConfig, env: NodeJS.ProcessEnv): Map<string, string> {
  const users = new Map<string, string>();
  for (const u of cfg.smtp.auth.users) {
    const pw = env[u.passwordEnv];
    if (!pw) throw new Error(`forwarder.smtp.auth.users: environment variable ${u.passwordEnv} (password of ${u.username}) is not set`);
    users.set(u.username, pw);
  }
  return users;
}

export async function startForwarder(rt: Runtime): Promise<Forwarder> {
  const cfg = rt.config.forwarder;
  const log = rt.log;
  const hostname = cfg.hostname ?? os.hostname();
  const token = resolveSecret(rt.dataDir, 'admin-token', cfg.admin.tokenEnv, rt.env);
  const users = passwordsOf(cfg, rt.env);
  const authAtStart = users.size > 0;
  let allow = new NetworkList(cfg.smtp.allowNetworks);
  const store = await Store.open(path.join(rt.dataDir, 'forwarder'), { log });
  const spool = await DurableQueue.open<SpoolMeta>(store, 'spool', { tally: triedAndDeferred });
  const killSwitch = await RelayPause.load(store, log);
  // Before intake and relaying start: no blob is being written now, so an unreferenced one is a crash's leftover.
  const orphans = await sweepOrphanBlobs(store, [spool]);
  if (orphans.length > 0) log.warn({ event: 'orphan-blobs-removed', count: orphans.length, files: orphans.slice(0, 20) }, 'removed blob files no spool record references');

  // Built again with new urls on reload; the other relay settings are those of the start.
  const relayClient = (urls: readonly string[]): RelayClient =>
    new RelayClient(
      {
        urls,
        requireTls: cfg.relay.requireTls,
        verifyCertificate: cfg.relay.verifyCertificate,
        ca: cfg.relay.caFile ? fs.readFileSync(cfg.relay.caFile, 'utf8') : undefined,
        serverName: cfg.relay.serverName,
        maxConnections: cfg.relay.maxConnections,
        messagesPerConnection: cfg.relay.messagesPerConnection,
        timeoutMs: cfg.relay.timeoutSeconds * 1000,
        clientName: 'postino-forwarder',
        probeScheduleSeconds: cfg.relay.probeScheduleSeconds,
        held: () => spool.size,
      },
      log,
    );
  const client = new RelaySwitch(relayClient(cfg.relay.urls));

  // Gauges are read at scrape time, when `source` (below) exists.
  const metrics = new ForwarderMetrics(() => queueGauges(source), () => client.health.status());

  /** Builds a DSN about `rec` for its sender and spools it (relayed like any message, from <>). */
  async function spoolDsn(rec: QueueRecord<SpoolMeta>, what: Pick<DsnInput, 'action' | 'recipients' | 'reason' | 'relay' | 'originalMessage'>): Promise<void> {
    const sender = rec.meta.envelope.mailFrom;
    const dsnParams = rec.meta.envelope.dsn;
    const body = await buildDsn({
      ...what,
      hostname,
      queueId: rec.id,
      sender,
      arrivalDate: new Date(rec.enqueuedAt),
      originalHeaders: await readHeaderSection(await spool.openBody(rec)),
      envid: dsnParams?.envid,
      orcpt: dsnParams?.rcpt && Object.fromEntries(Object.entries(dsnParams.rcpt).flatMap(([r, p]) => (p.orcpt ? [[r, p.orcpt]] : []))),
    });
    const now = Date.now();
    const dsn = await spool.enqueue({
      meta: { envelope: { mailFrom: '', rcptTo: [sender], clientAddress: '', heloName: hostname, receivedAt: now, tls: false }, pending: [sender] },
      body,
    });
    metrics.dsns.inc();
    log.info({ event: 'dsn', queueId: rec.id, action: what.action ?? 'failed', dsnId: dsn.id, to: sender }, 'DSN queued for the sender');
  }

  /** 5xx or expiry: spool a DSN to the sender (never for <>), then the caller removes the original. */
  async function onFailed(rec: QueueRecord<SpoolMeta>, failed: RecipientFailure[], reason: string): Promise<void> {
    const sender = rec.meta.envelope.mailFrom;
    const l = log.child({ queueId: rec.id });
    l.warn({ event: 'bounced', sender, recipients: failed.map((f) => ({ recipient: f.recipient, code: f.code, enhanced: f.enhanced, response: f.response })), reason }, 'recipients failed for good');
    if (sender === '') return; // a bounce of a bounce: RFC 5321 6.1 — drop, logged above
    const dsnParams = rec.meta.envelope.dsn;
    const reported = failed.filter((f) => wantsFailureNotice(dsnParams, f.recipient));
    if (reported.length === 0) return l.info({ event: 'dsn-not-wanted', to: sender }, 'no DSN: NOTIFY of every failed recipient leaves FAILURE out');
    const full = dsnParams?.ret === 'FULL' && rec.body.size <= MAX_RETURNED_MESSAGE_BYTES;
    await spoolDsn(rec, { recipients: reported, reason, relay: rec.meta.lastError?.relay ?? redactUrl(cfg.relay.urls[0]!), originalMessage: full ? await spool.readBody(rec) : undefined });
  }

  /**
   * NOTIFY=SUCCESS recipients taken by a listener that offers no DSN: a "relayed" notice (RFC 3461 6.2).
   * A listener that offers DSN got the parameters and reports itself (the engine's DSNs).
   */
  async function onRelayed(rec: QueueRecord<SpoolMeta>, accepted: string[], relayName: string, reply: SmtpReply, passedOn: boolean): Promise<void> {
    if (rec.meta.envelope.mailFrom === '' || passedOn) return;
    const wanted = accepted.filter((r) => rec.meta.envelope.dsn?.rcpt?.[r]?.notify?.includes('SUCCESS'));
    if (wanted.length === 0) return;
    await spoolDsn(rec, { action: 'relayed', recipients: wanted.map((recipient) => ({ recipient, ...reply })), reason: 'relayed', relay: relayName });
  }

  const relay = new RelayWorker<SpoolMeta>({ spool, client, retry: cfg.retry, log, onFailed, onRelayed, openBody: async (rec) => stampSpoolId(rec.id, await spool.sendableBody(rec)) });
  const compactor = new IdleCompactor(store, () => spool.size === 0, log);
  const seen = { delivered: 0, deferred: 0, failed: 0, held: 0 };
  function syncCounters(): void {
    const c = relay.counters;
    for (; seen.delivered < c.delivered; seen.delivered++) metrics.markRelayed();
    metrics.deferred.inc(c.deferred - seen.deferred);
    metrics.failedRecipients.inc(c.failed - seen.failed);
    metrics.held.inc(c.held - seen.held);
    seen.deferred = c.deferred;
    seen.failed = c.failed;
    seen.held = c.held;
  }
  // Always a bucket (rate 0 = no cap) so a reload can set a cap where there was none.
  const bucket = new TokenBucket({ ratePerSecond: cfg.relay.maxMessagesPerSecond, burst: (r) => Math.max(1, Math.ceil(r * BURST_SECONDS)) });
  const intakeFirst = new IntakeFirst({
    maxWaitMs: cfg.relay.yieldToIntakeSeconds * 1000,
    onSample(yielding) {
      metrics.relayYielding.set(yielding ? 1 : 0);
      if (yielding) metrics.relayYieldSeconds.inc(SAMPLE_MS / 1000);
    },
  });
  const relayConcurrency = cfg.relay.maxConnections * HANDLERS_PER_CONNECTION;
  const worker = new WorkerLoop<SpoolMeta>({
    queue: spool,
    concurrency: relayConcurrency,
    visibilityMs: RELAY_VISIBILITY_MS,
    // Saturated by apps sending: the relay trickles, the loop's time goes to intake (intake-first.ts).
    rate: intakeFirst.relayRate(bucket),
    // Every listener down: the spool holds (nothing leased, no attempt charged) until a probe finds one up.
    gate: () => relay.holdMs(),
    handle: async (rec) => {
      intakeFirst.noteLeased(rec);
      try {
        await relay.handle(rec);
      } finally {
        syncCounters();
        compactor.touched();
      }
    },
    log,
  });

  // STARTTLS for apps (RFC 3207): the configured pair (`up` fills in its development pair), else not offered.
  const smtpTls = cfg.smtp.tls.certFile && cfg.smtp.tls.keyFile ? { cert: fs.readFileSync(cfg.smtp.tls.certFile), key: fs.readFileSync(cfg.smtp.tls.keyFile) } : undefined;
  const intake = await startIntake<SpoolMeta>({
    name: 'forwarder',
    host: cfg.smtp.host,
    port: cfg.smtp.port,
    maxSize: cfg.smtp.maxSize,
    maxRecipients: cfg.smtp.maxRecipients,
    greetingDelayMs: cfg.smtp.greetingDelayMs,
    trustedNetworks: cfg.smtp.trustedNetworks,
    // The gate reads the list current at each connection (reload swaps it).
    gate: { admit: (ip) => (allow.contains(ip) ? undefined : new PostinoError('NOT_ALLOWED_NETWORK', `Access denied for ${ip}`)) },
    idleTimeoutMs: cfg.smtp.idleTimeoutSeconds * 1000,
    tls: smtpTls,
    queue: spool,
    // Bare LF from apps is fine (relayed as CRLF); a line over 998 octets the listener would refuse: say so now.
    strictData: { allowBareNewlines: true },
    toMeta: (envelope) => ({ envelope, pending: envelope.rcptTo }),
    // RFC 3461: for the forwarder's own DSNs (common/dsn.ts), and passed on to the listener when relaying.
    dsn: true,
    policy: {
      onConnect() {
        if (killSwitch.intakePaused) throw new PostinoError('INTAKE_PAUSED', 'Intake paused by the operator, try again later');
      },
      onMailFrom(_address, session) {
        if (killSwitch.intakePaused) throw new PostinoError('INTAKE_PAUSED', 'Intake paused by the operator, try again later');
        if (cfg.smtp.requireTls && !session.secure) throw new PostinoError('TLS_REQUIRED', 'Must issue a STARTTLS command first');
      },
    },
    // Apps on the local network often cannot do TLS; AUTH there is an app identity, not the perimeter (allowNetworks is).
    // With smtp.requireTls, AUTH waits for STARTTLS like everything else.
    ...(authAtStart
      ? {
          auth: {
            allowInsecure: !cfg.smtp.requireTls,
            async verify(username: string, password: string) {
              if (!users.has(username) || !sameSecret(users.get(username)!, password)) {
                log.warn({ event: 'auth-failed', user: username }, 'authentication failed');
                throw new PostinoError('AUTH_FAILED', 'Authentication credentials invalid');
              }
              return username;
            },
          },
        }
      : {}),
    authRequired: cfg.smtp.auth.required,
    onAccepted: (_id, size) => {
      intakeFirst.noteAccepted();
      metrics.accepted.inc();
      metrics.acceptedBytes.inc(size);
    },
    log,
  });

  const source: ForwarderStatusSource = {
    spool,
    counters: relay.counters,
    inFlight: () => worker.active,
    killSwitch,
    relaying: worker,
    metrics,
    relays: () => client.health.status(),
    diskBytes: () => store.diskUsage(),
    now: Date.now,
  };
  const admin = createAdminApi(token, source, log);
  // What is in effect: the start config with the live keys of every reload since.
  let effective: ForwarderConfig = cfg;
  function reload(read: (() => Config) | undefined): ReloadAnswer {
    const fail = (problems: ReloadAnswer['problems']): ReloadAnswer => {
      log.error({ event: 'config-reload-refused', problems }, `config reload refused, nothing changed: ${problems.map((p) => `${p.path || '(top level)'}: ${p.message}`).join('; ')}`);
      return refused(problems);
    };
    if (!read) return fail([{ path: '', message: 'this process was started without a config file to re-read' }]);
    const r = tryReload(read);
    if ('problems' in r) return fail(r.problems);
    const next = r.config.forwarder;
    let nextUsers: Map<string, string>;
    try {
      nextUsers = passwordsOf(next, rt.env);
    } catch (e) {
      return fail([{ path: 'forwarder.smtp.auth.users', message: (e as Error).message }]);
    }
    const paths = changedPaths({ forwarder: effective }, { forwarder: next });
    const answer = answerFor(paths, (p) => LIVE_KEYS.includes(p) && (p !== 'forwarder.smtp.auth.users' || authAtStart));
    if (answer.applied.includes('forwarder.smtp.allowNetworks')) allow = new NetworkList(next.smtp.allowNetworks);
    if (answer.applied.includes('forwarder.smtp.auth.users')) {
      users.clear();
      for (const [u, pw] of nextUsers) users.set(u, pw);
    }
    if (answer.applied.includes('forwarder.relay.urls')) client.replace(relayClient(next.relay.urls));
    if (answer.applied.includes('forwarder.relay.maxMessagesPerSecond')) bucket.setRate(next.relay.maxMessagesPerSecond);
    effective = {
      ...effective,
      smtp: { ...effective.smtp, allowNetworks: next.smtp.allowNetworks, auth: answer.applied.includes('forwarder.smtp.auth.users') ? next.smtp.auth : effective.smtp.auth },
      relay: { ...effective.relay, urls: next.relay.urls, maxMessagesPerSecond: next.relay.maxMessagesPerSecond },
    };
    log.info({ event: 'config-reloaded', applied: answer.applied, restartNeeded: answer.restartNeeded }, `config reloaded: ${answer.applied.length} change(s) applied, ${answer.restartNeeded.length} need a restart`);
    return answer;
  }
  admin.post('/reload', async () => reload(rt.reloadConfig));
  const onHup = (): void => void reload(rt.reloadConfig);
  process.on('SIGHUP', onHup);
  const adminPort = await listenHttp(admin, { host: cfg.admin.host, port: cfg.admin.port, what: 'forwarder admin', log });
  killSwitch.apply(worker);
  intakeFirst.start();

  return {
    smtpPort: intake.port,
    adminPort,
    spool,
    async close() {
      process.off('SIGHUP', onHup);
      await intake.close();
      await worker.stop();
      intakeFirst.stop();
      await compactor.close();
      client.close();
      await admin.close();
      await store.close();
    },
  };
}
