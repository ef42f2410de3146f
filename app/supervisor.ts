/*
 * supervisor.ts — runs components: one role in this process until a stop
 * signal (`postino forwarder|hosted|sink`), or all three as child processes
 * (`postino up`).
 *
 * Start order of `up`: the sink, then the hosted node, then the forwarder, each
 * spawned only when the one before reports ready (an IPC message sent once all
 * its ports listen), so messages the forwarder recovers from a crash meet a
 * listening listener instead of a closed port. A component that is not ready
 * within START_TIMEOUT_MS, or exits first, stops `up` with a clear error.
 *
 * Crashes: one process-wide policy (`installCrashPolicy`) for a promise rejected
 * with no handler and an exception nothing caught: log it as one `fatal` line
 * and exit with EXIT_CRASHED at once, for systemd (Restart=on-failure) or `up`
 * to see. Nothing is flushed or closed on the way out, and nothing needs to be:
 * every acknowledged message is already in a synced LevelDB write (DESIGN
 * guarantee 1), and a process in an unknown state must not go on relaying.
 *
 * Signals: SIGINT/SIGTERM stop gracefully (stop accepting, finish in-flight
 * transactions, close LevelDB); a second signal exits at once. SIGHUP reloads:
 * the hosted node re-reads its TLS pair and its accounts, the forwarder its
 * reloadable keys (`up` passes SIGHUP on to both children). Under `up` a child
 * re-reads the user's file (named by POSTINO_UP_SOURCE) through the same
 * embedded defaults, not the <data>/run/up-config.json written at start.
 * Side effects: writes <data>/run/up-config.json (the effective config of `up`,
 * mode 0600) and the secrets `up` needs under <data>/secrets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Component, Runtime } from '../common/runtime.js';
import { createLogger } from '../common/log.js';
import { ensureDevTls, ensureSecret, secretsDir } from '../common/secrets.js';
import { FileKeyRing } from '../common/signing-keys.js';
import { loadConfig } from '../common/config.js';
import { dataDirOf, loadOrExit } from './cli-support.js';
import { withAllocatorEnv } from './allocator-env.js';
import { withHeapFlags } from './heap-flags.js';

/** The bounce domain of `up` (RFC 6761: .localhost never leaves this machine). */
const UP_BOUNCE_DOMAIN = 'bounce.localhost';
/** A repeat of a stop signal within this window is the same signal delivered twice. */
const SIGNAL_REPEAT_WINDOW_MS = 1_000;
/**
 * How long `up` waits for one component to listen. Opening LevelDB and giving
 * back the leases of a large queue takes seconds; minutes mean it is stuck.
 */
const START_TIMEOUT_MS = 120_000;
/** The IPC message a component under `up` sends when all its ports listen. */
const READY = 'postino-ready';
/** Exit status after an unhandled rejection or uncaught exception (BSD EX_SOFTWARE: internal software error). */
export const EXIT_CRASHED = 70;

/** Logs an unhandled rejection or uncaught exception and exits EXIT_CRASHED (see the header). */
export function installCrashPolicy(log: Runtime['log']): void {
  const crash = (kind: string) => (err: unknown): void => {
    log.fatal({ event: 'crashed', kind, err }, `${kind}: exiting for a restart (acknowledged mail is on disk)`);
    process.exit(EXIT_CRASHED);
  };
  process.on('unhandledRejection', crash('unhandled rejection'));
  process.on('uncaughtException', crash('uncaught exception'));
}

export type Role = 'forwarder' | 'hosted' | 'sink';

/** Set by `up` for its children: the user's config file ('' = none), so a reload re-reads it. */
const UP_SOURCE_ENV = 'POSTINO_UP_SOURCE';

type Raw = Record<string, unknown>;

/**
 * Embedded defaults of `up`: the forwarder trusts the dev CA that signed the listener's pair and
 * offers STARTTLS to apps with the same pair (unless the config names one), and VERP is on with a
 * local bounce domain, so bounces sent to the intake (2526) close the loop. The message archive
 * (engine.archive) is on, so the dashboard shows what was sent. The forwarder's relay never steps
 * back for intake (relay.yieldToIntakeSeconds 0): the hosted node it would leave idle runs on the
 * same cores (forwarder/intake-first.ts).
 */
export function upDefaults(tls: { certFile: string; keyFile: string; caFile: string }): (raw: Raw) => Raw {
  return (raw) => {
    const fwd = (raw.forwarder ?? {}) as Raw;
    const relay = (fwd.relay ?? {}) as Raw;
    const smtp = (fwd.smtp ?? {}) as Raw;
    const smtpTls = (smtp.tls ?? {}) as Raw;
    const pair = smtpTls.certFile || smtpTls.keyFile ? smtpTls : { certFile: tls.certFile, keyFile: tls.keyFile };
    const engine = (raw.engine ?? {}) as Raw;
    return {
      ...raw,
      // The message archive is on in `up` (a dev node: see what was sent); off elsewhere (privacy, disk).
      engine: { bounceDomain: UP_BOUNCE_DOMAIN, ...engine, archive: { enabled: true, ...((engine.archive ?? {}) as Raw) } },
      forwarder: { ...fwd, smtp: { ...smtp, tls: pair }, relay: { caFile: tls.caFile, serverName: 'localhost', yieldToIntakeSeconds: 0, ...relay } },
    };
  };
}

/** How a component re-reads its config: its own file, or under `up` the user's file with up's defaults. */
async function reloaderFor(configFile: string | undefined, dataDir: string, env: NodeJS.ProcessEnv): Promise<() => ReturnType<typeof loadConfig>> {
  const upSource = env[UP_SOURCE_ENV];
  if (upSource === undefined) return () => loadConfig(configFile);
  const overlay = upDefaults(await ensureDevTls(secretsDir(dataDir)));
  return () => loadConfig(upSource || undefined, overlay);
}

/** Runs components until SIGINT/SIGTERM, then closes them in reverse order. */
function holdUntilSignal(components: Component[], log: Runtime['log']): void {
  let stoppingSince = 0;
  const stop = (signal: string): void => {
    if (stoppingSince) {
      // Under `up` one Ctrl-C arrives twice (directly, and forwarded by the parent):
      // only a signal a second or more later is a human insisting.
      if (Date.now() - stoppingSince < SIGNAL_REPEAT_WINDOW_MS) return;
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stoppingSince = Date.now();
    log.info({ event: 'stopping', signal }, 'stopping: finishing in-flight transactions');
    (async () => {
      for (const c of [...components].reverse()) await c.close();
    })().then(
      () => {
        log.info({ event: 'stopped' }, 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

export async function runRole(role: Role, configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const config = loadOrExit(configFile);
  const dataDir = dataDirOf(env);
  const log = createLogger(role, config.log.level);
  installCrashPolicy(log);
  // SIGHUP means "reload" (the hosted node: TLS pair and accounts; the forwarder: its reloadable keys), never "die", also
  // while starting: a hang-up sent to the process group of `up` must not stop a component.
  process.on('SIGHUP', () => log.info({ event: 'sighup' }, 'SIGHUP received'));
  const rt: Runtime = { config, dataDir, log, env, reloadConfig: await reloaderFor(configFile, dataDir, env) };
  // Each role loads only its own stage: a sink or the `up` supervisor that imported the
  // engine too would spend a second of CPU per start on modules it never runs.
  let component: Component;
  switch (role) {
    case 'forwarder':
      component = await (await import('./forwarder.js')).startForwarder(rt);
      break;
    case 'hosted':
      component = await (await import('./hosted.js')).startHosted(rt);
      break;
    case 'sink':
      component = await (await import('../sink/capture-sink.js')).startSink(config.sink, config.sink.dir ?? path.join(dataDir, 'sink'), log);
      break;
  }
  holdUntilSignal([component], log);
  // Under `up`: tell the supervisor we listen, so it starts the next component.
  if (process.send) {
    process.send({ event: READY, role });
    process.channel?.unref();
  }
}

/** Resolves when the child reports ready; rejects when it exits first or takes longer than START_TIMEOUT_MS. */
function whenReady(child: ChildProcess, role: Role): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} did not listen within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    child.on('message', (m: unknown) => {
      if ((m as { event?: string } | null)?.event !== READY) return;
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited (${code ?? signal}) before it listened`));
    });
  });
}

/**
 * `up`: secrets first (so the embedded defaults can point at them), then one
 * child process per component with the same effective config, each running
 * `cliPath <role>`. Children share our process group, so Ctrl-C reaches all of
 * them; we wait for them to finish.
 */
export async function up(cliPath: string, configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const dataDir = dataDirOf(env);
  fs.mkdirSync(dataDir, { recursive: true });
  for (const s of ['admin-token', 'api-key'] as const) ensureSecret(dataDir, s);
  FileKeyRing.open(dataDir);
  const tls = await ensureDevTls(secretsDir(dataDir));
  const config = loadOrExit(configFile, upDefaults(tls));
  const log = createLogger('up', config.log.level);
  installCrashPolicy(log);
  // Each child re-reads the user's file itself (POSTINO_UP_SOURCE) and keeps its old settings when it is bad.
  process.on('SIGHUP', () => {
    for (const role of ['hosted', 'forwarder'] as const) children.get(role)?.kill('SIGHUP');
  });
  const runDir = path.join(dataDir, 'run');
  fs.mkdirSync(runDir, { recursive: true });
  const effective = path.join(runDir, 'up-config.json');
  fs.writeFileSync(effective, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });

  const children = new Map<Role, ChildProcess>();
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals): void => {
    stopping = true;
    for (const c of children.values()) if (c.exitCode === null) c.kill(signal);
  };
  const exited: Promise<number>[] = [];
  // On a terminal Ctrl-C reaches the children directly (same process group); forward for `kill <pid>`.
  process.on('SIGINT', () => stopAll('SIGINT'));
  process.on('SIGTERM', () => stopAll('SIGTERM'));
  // Each after the one it sends to listens: sink ← hosted ← forwarder.
  for (const role of ['sink', 'hosted', 'forwarder'] as const) {
    if (stopping) break;
    const started = Date.now();
    const child = spawn(process.execPath, [...withHeapFlags(process.execArgv), cliPath, role, '--config', effective], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], env: { ...withAllocatorEnv(env), POSTINO_DATA: dataDir, [UP_SOURCE_ENV]: configFile ? path.resolve(configFile) : '' } });
    children.set(role, child);
    exited.push(
      new Promise((resolve) =>
        child.on('exit', (code, signal) => {
          if (!stopping) {
            log.error({ role, code, signal }, `${role} exited unexpectedly; stopping the others`);
            stopAll('SIGTERM');
          }
          resolve(code ?? 1);
        }),
      ),
    );
    try {
      await whenReady(child, role);
      log.info({ event: 'ready', role, ms: Date.now() - started }, `${role} listening`);
    } catch (err) {
      if (!stopping) {
        log.error({ event: 'start-failed', role, err: (err as Error).message }, `${(err as Error).message}; stopping`);
        stopAll('SIGTERM');
      }
    }
  }
  if (!stopping) log.info({ event: 'up', dataDir, pids: Object.fromEntries([...children].map(([r, c]) => [r, c.pid])) }, 'postino up: forwarder smtp 2525 → listener 2587 → engine → sink 2600 (see the listening lines)');
  const codes = await Promise.all(exited);
  process.exit(stopping && codes.every((c) => c === 0) ? 0 : 1);
}
