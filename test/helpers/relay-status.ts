/** The forwarder's relay state seen from outside (its /status and /metrics), shared by the recovery tests. */
import { ensureDevTls, secretsDir } from '../../common/secrets.js';
import { admin, sleep } from './forwarder.js';
import type { Running } from './postino.js';

export interface Status {
  queued: number;
  deferred: number;
  held: number;
  delivered: number;
  relays: Array<{ relay: string; state: string; downSince: string | null; nextProbeAt: string | null; nextProbeInSeconds: number | null; failedProbes: number; held: number }>;
}

/** The value of one sample line of Prometheus text, or NaN. */
export function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

export const lineCount = (p: Running, event: string): number => p.lines.filter((l) => l.includes(`"event":"${event}"`)).length;

/** Over STARTTLS with the dev CA verified, as in production. */
export async function tlsRelay(dataDir: string): Promise<Record<string, unknown>> {
  const tls = await ensureDevTls(secretsDir(dataDir));
  return { requireTls: true, caFile: tls.caFile, serverName: 'localhost' };
}

/** Polls the forwarder's /status until `done` or the timeout; returns the last body. */
export async function statusUntil(dataDir: string, port: number, done: (s: Status) => boolean, timeoutMs: number, everyMs = 100): Promise<Status> {
  const until = Date.now() + timeoutMs;
  let st = (await admin<Status>(dataDir, port, 'GET', '/status')).body;
  while (!done(st) && Date.now() < until) {
    await sleep(everyMs);
    st = (await admin<Status>(dataDir, port, 'GET', '/status')).body;
  }
  return st;
}
