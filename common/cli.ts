/*
 * cli.ts — the `postino` command (package.json bin → bin/postino.js → here).
 *
 *   postino up [--config F]                 forwarder + hosted + sink, one process each
 *   postino forwarder|hosted|sink --config F   one component
 *   postino forwarder status [--admin URL]  the forwarder's queue, readably
 *   postino forwarder pause [--intake] | resume [--admin URL]   the kill-switch
 *   postino hosted pause|resume|status [--account ID] [--api URL]
 *                                           the engine's kill-switch and delivery queue
 *   postino check-config F                  print every problem with its key path
 *   postino dev-cert [--out DIR]            a development CA and localhost TLS pair
 *   postino hash-password                   scrypt hash of the password on stdin (accounts[].listener.users)
 *   postino dkim keygen <domain> [--selector S] [--out DIR]
 *                                           a DKIM key (default <data>/secrets/dkim) and its DNS TXT record
 *
 * The data folder is $POSTINO_DATA (default ./data); it is read here, once, and
 * passed down. Exit status: 0 ok, 1 runtime failure, 2 bad usage or bad config.
 * Signals: SIGINT/SIGTERM stop gracefully (stop accepting, finish in-flight
 * transactions, close LevelDB); a second signal exits at once. SIGHUP makes the
 * hosted listener re-read its TLS pair (`up` passes it on to the hosted child).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startForwarder } from '../forwarder/forwarder.js';
import { generateDkimKey } from '../engine/dkim-keys.js';
import type { DeliveryStatus } from '../engine/delivery/queue-status.js';
import { startHosted } from '../engine/hosted.js';
import { startSink } from '../sink/capture-sink.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { hashPassword } from './password-hash.js';
import { createLogger } from './log.js';
import type { Component, Runtime } from './runtime.js';
import { ensureDevTls, ensureSecret, readSecret, secretsDir } from './secrets.js';

const USAGE = `usage:
  postino up [--config F]
  postino forwarder [--config F]
  postino forwarder status [--admin URL]
  postino forwarder pause [--intake] [--admin URL]
  postino forwarder resume [--admin URL]
  postino hosted [--config F]
  postino hosted pause|resume [--account ID] [--api URL]
  postino hosted status [--api URL]
  postino sink [--config F]
  postino check-config F
  postino dev-cert [--out DIR]
  postino hash-password   (reads the password from stdin)
  postino dkim keygen <domain> [--selector S] [--out DIR]
environment: POSTINO_DATA (data folder, default ./data)`;

class UsageError extends Error {}

/** A repeat of a stop signal within this window is the same signal delivered twice. */
const SIGNAL_REPEAT_WINDOW_MS = 1_000;

type Role = 'forwarder' | 'hosted' | 'sink';

function dataDirOf(env: NodeJS.ProcessEnv): string {
  return path.resolve(env.POSTINO_DATA || './data');
}

function loadOrExit(file: string | undefined, overlay?: (raw: Record<string, unknown>) => Record<string, unknown>): Config {
  try {
    return loadConfig(file, overlay);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(e.report() + '\n');
      process.exit(2);
    }
    throw e;
  }
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

async function runRole(role: Role, configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const config = loadOrExit(configFile);
  const dataDir = dataDirOf(env);
  const log = createLogger(role, config.log.level);
  // SIGHUP means "reload" (the hosted listener re-reads its TLS pair), never "die", also
  // while starting: a hang-up sent to the process group of `up` must not stop a component.
  process.on('SIGHUP', () => log.info({ event: 'sighup' }, 'SIGHUP received'));
  const rt: Runtime = { config, dataDir, log, env };
  let component: Component;
  switch (role) {
    case 'forwarder':
      component = await startForwarder(rt);
      break;
    case 'hosted':
      component = await startHosted(rt);
      break;
    case 'sink':
      component = await startSink(config.sink, config.sink.dir ?? path.join(dataDir, 'sink'), log);
      break;
  }
  holdUntilSignal([component], log);
}

/**
 * `up`: secrets first (so the embedded defaults can point at them), then one
 * child process per component with the same effective config. Children share
 * our process group, so Ctrl-C reaches all of them; we wait for them to finish.
 */
async function up(configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const dataDir = dataDirOf(env);
  fs.mkdirSync(dataDir, { recursive: true });
  for (const s of ['admin-token', 'api-key', 'signing-key'] as const) ensureSecret(dataDir, s);
  const tls = await ensureDevTls(secretsDir(dataDir));
  // Embedded defaults of `up`: the forwarder trusts the dev CA that signed the listener's pair.
  const config = loadOrExit(configFile, (raw) => {
    const fwd = (raw.forwarder ?? {}) as Record<string, unknown>;
    const relay = (fwd.relay ?? {}) as Record<string, unknown>;
    return { ...raw, forwarder: { ...fwd, relay: { caFile: tls.caFile, serverName: 'localhost', ...relay } } };
  });
  const log = createLogger('up', config.log.level);
  process.on('SIGHUP', () => children.get('hosted')?.kill('SIGHUP'));
  const runDir = path.join(dataDir, 'run');
  fs.mkdirSync(runDir, { recursive: true });
  const effective = path.join(runDir, 'up-config.json');
  fs.writeFileSync(effective, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });

  const self = fileURLToPath(import.meta.url);
  const children = new Map<Role, ChildProcess>();
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals): void => {
    stopping = true;
    for (const c of children.values()) if (c.exitCode === null) c.kill(signal);
  };
  const exited: Promise<number>[] = [];
  for (const role of ['sink', 'hosted', 'forwarder'] as const) {
    const child = spawn(process.execPath, [...process.execArgv, self, role, '--config', effective], { stdio: 'inherit', env: { ...env, POSTINO_DATA: dataDir } });
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
  }
  log.info({ event: 'up', dataDir, pids: Object.fromEntries([...children].map(([r, c]) => [r, c.pid])) }, 'postino up: forwarder smtp 2525 → listener 2587 → engine → sink 2600 (see the listening lines)');
  // On a terminal Ctrl-C reaches the children directly (same process group); forward for `kill <pid>`.
  process.on('SIGINT', () => stopAll('SIGINT'));
  process.on('SIGTERM', () => stopAll('SIGTERM'));
  const codes = await Promise.all(exited);
  process.exit(stopping && codes.every((c) => c === 0) ? 0 : 1);
}

/** Calls the forwarder's admin API with the token from $POSTINO_ADMIN_TOKEN or <data>/secrets. */
async function adminCall(adminUrl: string | undefined, env: NodeJS.ProcessEnv, method: 'GET' | 'POST', route: string): Promise<Record<string, unknown>> {
  const dataDir = dataDirOf(env);
  const token = env.POSTINO_ADMIN_TOKEN ?? readSecret(dataDir, 'admin-token');
  if (!token) throw new UsageError(`no admin token: set POSTINO_ADMIN_TOKEN or run from where ${secretsDir(dataDir)} exists`);
  const base = adminUrl ?? 'http://127.0.0.1:8025';
  const res = await fetch(new URL(route, base), { method, headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`${base}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown>;
}

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** `postino forwarder status`: one fact per line, machine-greppable (`key  value`). */
function printStatus(s: Record<string, unknown>): void {
  const drain = s.estimatedDrainSeconds;
  const rows: Array<[string, string]> = [
    ['relaying', s.paused ? `PAUSED since ${String(s.pausedSince)} (postino forwarder resume)` : 'running'],
    ['intake', s.intakePaused ? 'PAUSED: new mail gets 421' : 'accepting'],
    ['queued', String(s.queued)],
    ['inFlight', String(s.inFlight)],
    ['deferred', String(s.deferred)],
    ['delivered', String(s.delivered)],
    ['failed', String(s.failed)],
    ['oldestAge', duration(Number(s.oldestAgeSeconds))],
    ['relayRate', `${String(s.relayRatePerSecond)} msg/s (last minute)`],
    ['drainEstimate', drain === null ? 'unknown (paused or nothing relayed lately)' : duration(Number(drain))],
    ['spoolDisk', `${(Number(s.spoolDiskBytes) / 1024).toFixed(1)} KiB`],
  ];
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(14)} ${v}`).join('\n') + '\n');
}

async function forwarderCommand(sub: 'status' | 'pause' | 'resume', adminUrl: string | undefined, intake: boolean, env: NodeJS.ProcessEnv): Promise<void> {
  switch (sub) {
    case 'status':
      return printStatus(await adminCall(adminUrl, env, 'GET', '/status'));
    case 'pause': {
      await adminCall(adminUrl, env, 'POST', intake ? '/pause?intake=1' : '/pause');
      process.stdout.write(intake ? 'paused: relaying stopped and new mail refused with 421\n' : 'paused: relaying stopped; intake keeps accepting and spooling\n');
      return;
    }
    case 'resume':
      await adminCall(adminUrl, env, 'POST', '/resume');
      process.stdout.write('resumed: relaying (and intake) running\n');
      return;
  }
}

/** Prints the delivery status like the forwarder's: one `key value` row each, then domains and relays. */
function printHostedStatus(body: { intake: number; delivery: DeliveryStatus }): void {
  const d = body.delivery;
  const paused = d.paused.global ? 'yes (global)' : d.paused.accounts.length ? `accounts: ${d.paused.accounts.join(', ')}` : 'no';
  const rows: Array<[string, unknown]> = [
    ['intake', body.intake],
    ['delivery', d.total],
    ['queued', d.states.queued],
    ['ready', d.states.ready],
    ['sending', d.states.sending],
    ['deferred', d.states.deferred],
    ['paused', paused],
    ['oldestAgeSeconds', d.oldestAgeSeconds],
    ['ratePerSecond', d.ratePerSecond],
    ['estimatedDrainSeconds', d.estimatedDrainSeconds ?? 'unknown (no recent deliveries)'],
    ...Object.entries(d.outcomes).map(([k, v]): [string, unknown] => [k, v]),
  ];
  const out = rows.map(([k, v]) => `${k.padEnd(22)} ${String(v)}`);
  if (d.domains.length) {
    out.push('', `${'domain'.padEnd(30)} ${'total'.padStart(7)} ${'ready'.padStart(7)} ${'sending'.padStart(7)} ${'deferred'.padStart(8)}`);
    for (const x of d.domains.slice(0, 20)) out.push(`${x.domain.padEnd(30)} ${String(x.total).padStart(7)} ${String(x.ready).padStart(7)} ${String(x.sending).padStart(7)} ${String(x.deferred).padStart(8)}`);
  }
  for (const l of d.lanes) if (l.suspendedUntil || l.slowedUntil) out.push(`${l.domain}: ${l.suspendedUntil ? `suspended until ${l.suspendedUntil}` : `slowed until ${l.slowedUntil}`} (rule ${l.rule ?? '?'})`);
  out.push('', ...d.relays.map((r) => `relay ${r.url} weight ${r.weight} ${r.up ? 'up' : `down until ${r.downUntil}`} sent ${r.sent}`));
  process.stdout.write(out.join('\n') + '\n');
}

async function hostedCommand(sub: 'pause' | 'resume' | 'status', apiUrl: string | undefined, account: string | undefined, env: NodeJS.ProcessEnv): Promise<void> {
  const dataDir = dataDirOf(env);
  const key = env.POSTINO_API_KEY ?? readSecret(dataDir, 'api-key');
  if (!key) throw new UsageError(`no API key: set POSTINO_API_KEY or run from where ${secretsDir(dataDir)} exists`);
  const base = apiUrl ?? 'http://127.0.0.1:8080';
  const headers = { authorization: `Bearer ${key}` };
  if (sub === 'status') {
    const res = await fetch(new URL('/api/queue', base), { headers });
    if (!res.ok) throw new Error(`${base}: HTTP ${res.status} ${await res.text()}`);
    printHostedStatus((await res.json()) as { intake: number; delivery: DeliveryStatus });
    return;
  }
  const url = new URL(`/api/${sub}`, base);
  if (account) url.searchParams.set('account', account);
  const res = await fetch(url, { method: 'POST', headers });
  if (!res.ok) throw new Error(`${base}: HTTP ${res.status} ${await res.text()}`);
  const { paused } = (await res.json()) as { paused: { global: boolean; accounts: string[] } };
  process.stdout.write(`delivery ${sub === 'pause' ? 'paused' : 'resumed'}${account ? ` for account ${account}` : ''}; paused now: global ${paused.global ? 'yes' : 'no'}, accounts [${paused.accounts.join(', ')}]\n`);
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      admin: { type: 'string' },
      intake: { type: 'boolean' },
      api: { type: 'string' },
      account: { type: 'string' },
      out: { type: 'string' },
      selector: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [cmd, sub, arg] = positionals;
  if (values.help || !cmd) {
    process.stdout.write(USAGE + '\n');
    if (!cmd && !values.help) process.exitCode = 2;
    return;
  }
  switch (cmd) {
    case 'up':
      return up(values.config, env);
    case 'forwarder':
      if (sub === 'status' || sub === 'pause' || sub === 'resume') return forwarderCommand(sub, values.admin, values.intake ?? false, env);
      if (sub !== undefined) throw new UsageError(`unknown forwarder command "${sub}"`);
      return runRole('forwarder', values.config, env);
    case 'hosted':
      if (sub === 'pause' || sub === 'resume' || sub === 'status') return hostedCommand(sub, values.api, values.account, env);
      if (sub !== undefined) throw new UsageError(`unknown hosted command "${sub}"`);
      return runRole(cmd, values.config, env);
    case 'sink':
      if (sub !== undefined) throw new UsageError(`unknown ${cmd} command "${sub}"`);
      return runRole(cmd, values.config, env);
    case 'check-config': {
      const file = sub ?? values.config;
      if (!file) throw new UsageError('check-config needs a file');
      loadOrExit(file);
      process.stdout.write(`${file}: ok\n`);
      return;
    }
    case 'dev-cert': {
      const p = await ensureDevTls(values.out ?? secretsDir(dataDirOf(env)));
      process.stdout.write(`CA:   ${p.caFile}\ncert: ${p.certFile}\nkey:  ${p.keyFile}\n`);
      return;
    }
    case 'hash-password': {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const password = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
      if (!password) throw new UsageError('hash-password reads the password from stdin');
      process.stdout.write((await hashPassword(password)) + '\n');
      return;
    }
    case 'dkim': {
      if (sub !== 'keygen' || !arg) throw new UsageError('usage: postino dkim keygen <domain> [--selector S] [--out DIR]');
      if (!/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(arg)) throw new UsageError(`"${arg}" is not a domain name`);
      const selector = values.selector ?? 'postino';
      let k: ReturnType<typeof generateDkimKey>;
      try {
        k = generateDkimKey(values.out ?? path.join(secretsDir(dataDirOf(env)), 'dkim'), arg.toLowerCase(), selector);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        process.stderr.write(`postino: a key for ${arg.toLowerCase()} with selector ${selector} exists already; never overwritten (use another --selector to rotate)\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(
        `private key: ${k.keyFile}\n` +
          `config:      accounts[].engine.dkim = ${JSON.stringify({ domain: arg.toLowerCase(), selector, keyFile: k.keyFile })}\n` +
          `DNS record:\n${k.record}\n`,
      );
      return;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

export function run(): void {
  main(process.argv.slice(2), process.env).catch((e: unknown) => {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`postino: ${(e as Error).message}\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`postino: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}

// Started directly (as `up` does for its children) rather than through bin/postino.js.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) run();
