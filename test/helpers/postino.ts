/*
 * Starts the real `postino` CLI (the built dist/, as `npm start` does) in its own
 * process group, and waits for its listening lines.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePorts } from './ports.js';
import { suiteStorage } from './postgres.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'bin', 'postino.js');

/** Folders tempDir made in this process, removed when it exits. */
const made = new Set<string>();
process.once('exit', removeAllTempDirs);

/**
 * A new folder under the OS temp dir, removed with everything in it when this process exits
 * (each test file and each bench is a process): a day of suite runs and benches had left ~9,800
 * of them, 72 GB (a pipeline bench's 1 MB run alone 1.2 GB: the archive keeps every body), and
 * this machine's disk stood at 94%. POSTINO_KEEP_TMP=1 keeps them for a look after a failure.
 */
export function tempDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `postino-${name}-`));
  if (process.env.POSTINO_KEEP_TMP === '1') return dir;
  made.add(dir);
  return dir;
}

function removeAllTempDirs(): void {
  for (const dir of [...made]) {
    try {
      removeTempDir(dir);
    } catch {
      // A process a test left running may still write there: a leftover folder must not fail the file.
    }
  }
}

/** Removes a tempDir folder now (a bench run's data, before the next run fills the disk again); one it keeps stays. */
export function removeTempDir(dir: string): void {
  if (!made.delete(dir)) return;
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

export interface UpPorts {
  forwarder: number;
  admin: number;
  listener: number;
  http: number;
  sink: number;
  bounce: number;
}

/** A config for `postino up` on free ports (the defaults could clash with a running instance). */
export async function upConfig(extra: (p: UpPorts) => Record<string, unknown> = () => ({})): Promise<{ config: Record<string, unknown>; ports: UpPorts }> {
  const [forwarder, admin, listener, http, sink, bounce] = await freePorts(6);
  const ports: UpPorts = { forwarder: forwarder!, admin: admin!, listener: listener!, http: http!, sink: sink!, bounce: bounce! };
  const base = {
    log: { level: 'info' },
    forwarder: {
      smtp: { port: ports.forwarder },
      admin: { port: ports.admin },
      relay: { urls: [`smtp://127.0.0.1:${ports.listener}`] },
    },
    listener: { port: ports.listener },
    http: { port: ports.http },
    feedback: { port: ports.bounce },
    delivery: { relays: [`smtp://127.0.0.1:${ports.sink}`] },
    sink: { port: ports.sink },
  };
  return { config: deepMerge({ ...base, ...(await suiteStorage()) }, extra(ports)), ports };
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur) ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

export interface Running {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** SIGKILL to the whole process group (up and its children). */
  kill9(): void;
  /** SIGTERM to the group and wait. */
  stop(): Promise<number | null>;
}

/**
 * Process groups started here and not yet exited. A test that times out is
 * abandoned by the runner (--test-force-exit) without its `finally`: without
 * this, its detached `postino up` would live on, retrying and taking CPU from
 * every later test.
 */
const live = new Set<number>();
process.on('exit', () => {
  for (const pgid of live) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** Runs `postino <args>` with POSTINO_DATA=dataDir; resolves once `expectListening` listening lines were logged. */
export async function startPostino(args: string[], dataDir: string, expectListening: number, timeoutMs = 45_000): Promise<Running> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, POSTINO_DATA: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group, so kill9() takes the children too
  });
  const lines: string[] = [];
  let listening = 0;
  live.add(child.pid!);
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      live.delete(child.pid!);
      resolve(code);
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`postino ${args.join(' ')} not listening after ${timeoutMs} ms:\n${lines.slice(-20).join('\n')}`)), timeoutMs);
    const onLine = (line: string): void => {
      lines.push(line);
      if (line.includes('"event":"listening"') && ++listening === expectListening) {
        clearTimeout(timer);
        resolve();
      }
    };
    readline.createInterface({ input: child.stdout! }).on('line', onLine);
    readline.createInterface({ input: child.stderr! }).on('line', onLine);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`postino ${args.join(' ')} exited with ${code} before listening:\n${lines.slice(-20).join('\n')}`));
    });
  });
  const kill9 = (): void => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  // Not listening in time: nothing will stop it but us.
  await ready.catch((e: unknown) => {
    kill9();
    throw e;
  });
  return {
    child,
    lines,
    exited,
    kill9,
    async stop() {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        return child.exitCode;
      }
      const t = setTimeout(kill9, 20_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** Starts `postino up` with a config written to dataDir/test-config.json. */
export async function startUp(dataDir: string, config: Record<string, unknown>, timeoutMs?: number): Promise<Running> {
  const file = path.join(dataDir, 'test-config.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  // forwarder smtp + admin, listener, bounce intake, hosted http, sink
  return startPostino(['up', '--config', file], dataDir, 6, timeoutMs);
}

/** An account API key made by the built CLI (`postino hosted api-key new`): the token and its config entry. */
export function newApiKey(account: string): { token: string; entry: { id: string; hash: string } } {
  const r = spawnSync(process.execPath, [CLI, 'hosted', 'api-key', 'new', account], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`postino hosted api-key new exited ${r.status}: ${r.stderr}`);
  const token = /^(pk_\S+)$/m.exec(r.stdout)?.[1];
  const entry = /^(\{.*\})$/m.exec(r.stdout)?.[1];
  if (!token || !entry) throw new Error(`no key in: ${r.stdout}`);
  return { token, entry: JSON.parse(entry) as { id: string; hash: string } };
}
