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

export interface DeliveryCount {
  messages: SinkMessage[];
  /** Acknowledged test ids missing from the sink. */
  lost: string[];
  /** Extra copies beyond the first of any test id. */
  duplicates: number;
  /** Distinct test ids in the sink that were never acknowledged (accepted as the client died). */
  unacked: number;
}

/** Waits until every acknowledged test id is in the sink (or the timeout), then counts losses and duplicates. */
export async function countDelivered(dir: string, acked: readonly string[], timeoutMs: number): Promise<DeliveryCount> {
  const messages = await waitForSink(dir, (m) => {
    const have = new Set(m.map((x) => x.testId));
    return acked.every((id) => have.has(id));
  }, timeoutMs);
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(m.testId!, (counts.get(m.testId!) ?? 0) + 1);
  const ackedSet = new Set(acked);
  return {
    messages,
    lost: acked.filter((id) => !counts.has(id)),
    duplicates: [...counts.values()].reduce((a, c) => a + c - 1, 0),
    unacked: [...counts.keys()].filter((id) => !ackedSet.has(id)).length,
  };
}
