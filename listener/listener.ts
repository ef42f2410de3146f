/*
 * listener.ts — the hosted SMTP entry: allowlist, STARTTLS, and intake into the
 * engine's durable intake queue (`250` only after the synced write).
 *
 * Config: the `listener` section (127.0.0.1:2587; allowNetworks 127.0.0.1/32 and
 * ::1/128; tls.certFile/keyFile, else the development pair in <data>/secrets).
 * Standards: RFC 5321, RFC 3207 (STARTTLS), RFC 1870 (SIZE).
 */
import fs from 'node:fs';
import type { ListenerConfig } from '../common/config.js';
import type { DurableQueue } from '../common/durable-queue.js';
import { PostinoError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { ensureDevTls, secretsDir } from '../common/secrets.js';
import type { IntakeMeta } from '../common/intake-record.js';
import { sendAtProblem } from '../common/send-at.js';
import { startIntake, type Intake } from '../common/smtp-intake.js';

export async function listenerTls(cfg: ListenerConfig, dataDir: string): Promise<{ key: Buffer; cert: Buffer }> {
  const files = cfg.tls.certFile && cfg.tls.keyFile ? { certFile: cfg.tls.certFile, keyFile: cfg.tls.keyFile } : await ensureDevTls(secretsDir(dataDir));
  return { key: fs.readFileSync(files.keyFile), cert: fs.readFileSync(files.certFile) };
}

export async function startListener(cfg: ListenerConfig, dataDir: string, queue: DurableQueue<IntakeMeta>, log: Logger): Promise<Intake> {
  const tls = await listenerTls(cfg, dataDir);
  return startIntake<IntakeMeta>({
    name: 'listener',
    host: cfg.host,
    port: cfg.port,
    maxSize: cfg.maxSize,
    maxRecipients: cfg.maxRecipients,
    greetingDelayMs: cfg.greetingDelayMs,
    trustedNetworks: cfg.trustedNetworks,
    allowNetworks: cfg.allowNetworks,
    idleTimeoutMs: cfg.idleTimeoutSeconds * 1000,
    tls,
    queue,
    // Per-account matching (networks, AUTH, sender domains) replaces this with the listener issue.
    toMeta: (envelope) => ({ envelope, account: 'default' }),
    policy: {
      onMailFrom(_address, session) {
        if (cfg.requireTls && !session.secure) throw new PostinoError('TLS_REQUIRED', 'Must issue a STARTTLS command first');
      },
    },
    // The engine would park an unparseable X-Postino-Send-At forever or send it at once: refuse it here.
    checkHeaders(headers) {
      const problem = sendAtProblem(headers);
      if (problem) throw new PostinoError('BAD_MESSAGE', problem);
    },
    log,
  });
}
