/* Reads what the capture sink stored: the .json marker, and the .eml's headers/body. */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface SinkMessage {
  id: string;
  mailFrom: string;
  rcptTo: string[];
  clientAddress: string;
  sessionId: string;
  size: number;
  receivedAt: string;
  headers: string;
  bodySha: string;
  testId: string | undefined;
}

export function readSink(dir: string): SinkMessage[] {
  if (!fs.existsSync(dir)) return [];
  const out: SinkMessage[] = [];
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Omit<SinkMessage, 'headers' | 'bodySha' | 'testId'>;
    const eml = fs.readFileSync(path.join(dir, f.replace(/\.json$/, '.eml')));
    const cut = eml.indexOf('\r\n\r\n');
    const headers = eml.subarray(0, cut).toString('utf8');
    const body = eml.subarray(cut + 4);
    const testId = /^X-Test-Id: (.+)$/im.exec(headers)?.[1]?.trim();
    out.push({ ...meta, headers, bodySha: createHash('sha256').update(body).digest('hex'), testId });
  }
  return out;
}

/** Polls until `done(messages)` or the timeout; returns the last read. */
export async function waitForSink(dir: string, done: (m: SinkMessage[]) => boolean, timeoutMs: number): Promise<SinkMessage[]> {
  const until = Date.now() + timeoutMs;
  let msgs = readSink(dir);
  while (!done(msgs) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    msgs = readSink(dir);
  }
  return msgs;
}
