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
