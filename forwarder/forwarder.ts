/*
 * forwarder.ts — the appliance: SMTP intake → spool → relay worker → hosted
 * listener, plus the admin API.
 *
 * Data: <data>/forwarder/{db,blobs}. Config: the `forwarder` section.
 * Shutdown: stop SMTP intake (sessions in DATA finish), stop relaying (sends in
 * progress finish), close the admin API, close LevelDB.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DurableQueue } from '../common/durable-queue.js';
import { listenHttp } from '../common/http-server.js';
import type { Component, Runtime } from '../common/runtime.js';
import { resolveSecret } from '../common/secrets.js';
import { RelayClient } from '../common/smtp-client.js';
import { startIntake } from '../common/smtp-intake.js';
import { Store } from '../common/store.js';
import { WorkerLoop } from '../common/worker-loop.js';
import { createAdminApi } from './admin-api.js';
import { RelayWorker } from '../common/relay-worker.js';
import type { SpoolMeta } from './spool-record.js';

/** A relay transaction never legitimately takes this long; past it the message is retried. */
const RELAY_VISIBILITY_MS = 10 * 60_000;

export interface Forwarder extends Component {
  smtpPort: number;
  adminPort: number;
  spool: DurableQueue<SpoolMeta>;
}

export async function startForwarder(rt: Runtime): Promise<Forwarder> {
  const cfg = rt.config.forwarder;
  const log = rt.log;
  const token = resolveSecret(rt.dataDir, 'admin-token', cfg.admin.tokenEnv, rt.env);
  const store = await Store.open(path.join(rt.dataDir, 'forwarder'));
  const spool = await DurableQueue.open<SpoolMeta>(store, 'spool');

  const client = new RelayClient(
    {
      urls: cfg.relay.urls,
      requireTls: cfg.relay.requireTls,
      verifyCertificate: cfg.relay.verifyCertificate,
      ca: cfg.relay.caFile ? fs.readFileSync(cfg.relay.caFile, 'utf8') : undefined,
      serverName: cfg.relay.serverName,
      maxConnections: cfg.relay.maxConnections,
      messagesPerConnection: cfg.relay.messagesPerConnection,
      timeoutMs: cfg.relay.timeoutSeconds * 1000,
      clientName: 'postino-forwarder',
    },
    log,
  );
  const relay = new RelayWorker<SpoolMeta>(spool, client, cfg.retry, log);
  const worker = new WorkerLoop<SpoolMeta>({
    queue: spool,
    concurrency: cfg.relay.maxConnections * 4,
    visibilityMs: RELAY_VISIBILITY_MS,
    handle: (rec) => relay.handle(rec),
    log,
  });

  const intake = await startIntake<SpoolMeta>({
    name: 'forwarder',
    host: cfg.smtp.host,
    port: cfg.smtp.port,
    maxSize: cfg.smtp.maxSize,
    maxRecipients: cfg.smtp.maxRecipients,
    greetingDelayMs: cfg.smtp.greetingDelayMs,
    trustedNetworks: cfg.smtp.trustedNetworks,
    allowNetworks: cfg.smtp.allowNetworks,
    idleTimeoutMs: cfg.smtp.idleTimeoutSeconds * 1000,
    queue: spool,
    toMeta: (envelope) => ({ envelope, pending: envelope.rcptTo }),
    log,
  });
  const admin = createAdminApi(token, { spool, counters: relay.counters, inFlight: () => worker.active, paused: () => worker.isPaused, now: Date.now }, log);
  const adminPort = await listenHttp(admin, cfg.admin.host, cfg.admin.port, 'forwarder admin', log);
  worker.start();

  return {
    smtpPort: intake.port,
    adminPort,
    spool,
    async close() {
      await intake.close();
      await worker.stop();
      client.close();
      await admin.close();
      await store.close();
    },
  };
}
