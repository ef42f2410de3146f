/* Runs test/helpers/send_mail.py (Python's smtplib) and collects its JSON lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { ROOT } from './postino.js';

export interface SendResult {
  i: number;
  ok: boolean;
  testId: string;
  bodySha?: string;
  size?: number;
  reply?: string;
  error?: string;
}

export interface Sender {
  child: ChildProcess;
  results: SendResult[];
  done: Promise<SendResult[]>;
  onResult(cb: (r: SendResult, all: SendResult[]) => void): void;
}

export function runPythonSender(args: string[]): Sender {
  const child = spawn('python3', [path.join(ROOT, 'test/helpers/send_mail.py'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const results: SendResult[] = [];
  const listeners: Array<(r: SendResult, all: SendResult[]) => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    const r = JSON.parse(line) as SendResult;
    results.push(r);
    for (const l of listeners) l(r, results);
  });
  const done = new Promise<SendResult[]>((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve(results) : reject(new Error(`send_mail.py exited ${code}`)))),
  );
  return { child, results, done, onResult: (cb) => listeners.push(cb) };
}

export interface Clients {
  senders: Sender[];
  /** Test ids acknowledged with 250 so far, over all clients. */
  acked(): string[];
  /** Resolves when every client has exited (on its own or after stop()). */
  done: Promise<void>;
  /** SIGTERM to every client still running. */
  stop(): Promise<void>;
}

/** `n` concurrent send_mail.py clients, client k with prefix `${prefix}${k}` and the same other arguments. */
export function runPythonClients(n: number, prefix: string, args: string[]): Clients {
  const senders = Array.from({ length: n }, (_, k) => runPythonSender([...args, '--prefix', `${prefix}${k}`]));
  const exited = senders.map((s) => new Promise<void>((resolve) => (s.child.exitCode !== null || s.child.signalCode !== null ? resolve() : s.child.once('exit', () => resolve()))));
  for (const s of senders) s.done.catch(() => undefined); // a stopped client exits with a signal
  const done = Promise.all(exited).then(() => undefined);
  return {
    senders,
    acked: () => senders.flatMap((s) => s.results.filter((r) => r.ok).map((r) => r.testId)),
    done,
    async stop() {
      for (const s of senders) if (s.child.exitCode === null) s.child.kill('SIGTERM');
      await done;
    },
  };
}
