/*
 * relay-pool.ts — the MTA cluster as a weighted set of relays with pooled
 * connections, and relays that fail to connect skipped for a cool-off.
 *
 * Choice: smooth weighted round-robin (nginx's) over the relays that are up,
 * so traffic splits by weight message by message. A failure before any SMTP
 * reply (refused, timeout, TLS failure) marks the relay down for
 * `relayCoolOffSeconds` and the same copy goes to the next relay; a reply
 * (2xx/4xx/5xx) is the answer. When every relay is down, the one whose
 * cool-off ends first is tried anyway (a cluster never stays dark by policy).
 *
 * Pools: one nodemailer pooled transport per (relay, sending IP, shaping pool
 * key). STARTTLS is used when offered (required with `requireTls`), AUTH when
 * the URL carries user:pass, smtps:// for implicit TLS (RFC 3207, RFC 4954, RFC 8314).
 *
 * Config: delivery.relays, delivery.relayCoolOffSeconds (30),
 * delivery.maxConnections (20), delivery.timeoutSeconds (60),
 * delivery.verifyCertificate (false), engine.hostname (EHLO name).
 * Side effects: network connections.
 */
import type { Readable } from 'node:stream';
import type { RelayConfig } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import { makeTransport, SendFailure, sendVia, type SendOutcome, type Transport } from '../../common/smtp-client.js';

export interface RelayPoolOptions {
  relays: readonly RelayConfig[];
  coolOffMs: number;
  /** Connections of the default pool per relay and sending IP. */
  maxConnections: number;
  verifyCertificate: boolean;
  timeoutMs: number;
  clientName: string;
  clock?: () => number;
}

/** Which pool a send uses: its sending IP and its destination's shaping. */
export interface PoolChoice {
  localAddress?: string | undefined;
  poolKey: string;
  maxConnections: number;
  messagesPerConnection: number;
}

interface RelayState {
  cfg: RelayConfig;
  downUntil: number;
  current: number;
  sent: number;
}

export interface RelayStatus {
  url: string;
  weight: number;
  up: boolean;
  downUntil?: string | undefined;
  sent: number;
}

/** Passwords never leave this file in logs or status. */
export function redactUrl(u: string): string {
  return u.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}

export class RelayPool {
  private readonly relays: RelayState[];
  private readonly transports = new Map<string, Transport>();
  private readonly now: () => number;

  constructor(
    private readonly o: RelayPoolOptions,
    private readonly log: Logger,
  ) {
    this.relays = o.relays.map((cfg) => ({ cfg, downUntil: 0, current: 0, sent: 0 }));
    this.now = o.clock ?? Date.now;
  }

  /** Relays in the order to try them for one copy: the weighted pick first, then the other up ones, then the down ones. */
  private order(): RelayState[] {
    const now = this.now();
    const up = this.relays.filter((r) => r.downUntil <= now);
    const down = this.relays.filter((r) => r.downUntil > now).sort((a, b) => a.downUntil - b.downUntil);
    if (up.length === 0) return down;
    // Smooth weighted round-robin: add each weight, pick the largest, subtract the total.
    let total = 0;
    let best = up[0]!;
    for (const r of up) {
      r.current += r.cfg.weight;
      total += r.cfg.weight;
      if (r.current > best.current) best = r;
    }
    best.current -= total;
    return [best, ...up.filter((r) => r !== best), ...down];
  }

  private transport(r: RelayState, p: PoolChoice): Transport {
    const key = `${r.cfg.url}|${p.localAddress ?? ''}|${p.poolKey}`;
    let t = this.transports.get(key);
    if (!t) {
      t = makeTransport(r.cfg.url, {
        requireTls: r.cfg.requireTls,
        verifyCertificate: this.o.verifyCertificate,
        maxConnections: p.maxConnections,
        messagesPerConnection: p.messagesPerConnection,
        timeoutMs: this.o.timeoutMs,
        clientName: this.o.clientName,
        localAddress: p.localAddress,
      });
      this.transports.set(key, t);
    }
    return t;
  }

  /**
   * Sends one copy. Resolves with the relay's 2xx; throws SendFailure with the
   * reply for 4xx/5xx, or without a reply when no relay could be reached.
   */
  async send(envelope: { from: string; to: string[] }, openBody: () => Promise<Readable>, pool: PoolChoice): Promise<SendOutcome> {
    let last: Error | undefined;
    for (const r of this.order()) {
      const res = await sendVia(redactUrl(r.cfg.url), this.transport(r, pool), envelope, openBody);
      if (res.kind === 'sent') {
        r.sent++;
        if (r.downUntil > 0) {
          r.downUntil = 0;
          this.log.info({ event: 'relay-up', relay: redactUrl(r.cfg.url) }, 'relay reachable again');
        }
        return res.outcome;
      }
      last = res.error;
      const first = r.downUntil <= this.now();
      r.downUntil = this.now() + this.o.coolOffMs;
      if (first) this.log.warn({ event: 'relay-down', relay: redactUrl(r.cfg.url), err: { code: res.error.code, message: res.error.message }, coolOffMs: this.o.coolOffMs }, 'relay unreachable; skipped for the cool-off');
    }
    throw new SendFailure(`no relay reachable: ${last?.message ?? 'none configured'}`, undefined, undefined);
  }

  status(): RelayStatus[] {
    const now = this.now();
    return this.relays.map((r) => ({
      url: redactUrl(r.cfg.url),
      weight: r.cfg.weight,
      up: r.downUntil <= now,
      downUntil: r.downUntil > now ? new Date(r.downUntil).toISOString() : undefined,
      sent: r.sent,
    }));
  }

  close(): void {
    for (const t of this.transports.values()) t.close();
    this.transports.clear();
  }
}
