/*
 * relay-pool.ts — the MTA cluster as a weighted set of relays with pooled
 * connections; a relay that cannot be reached is down for every copy at once.
 *
 * Choice: smooth weighted round-robin (nginx's) over the relays that are up,
 * so traffic splits by weight message by message. A failure before any SMTP
 * reply (refused, timeout, TLS failure, refused STARTTLS/AUTH) marks the relay
 * down (common/relay-health.ts) and the same copy goes to the next relay that
 * is up; a reply (2xx/4xx/5xx) is the answer. A down relay gets no copies; it
 * is probed on `delivery.relayProbeScheduleSeconds` (a session opened and
 * closed, not a copy) and takes traffic again when a probe succeeds. With
 * every relay down `send` fails at once (a SendFailure without a reply): the delivery
 * worker gives the copy back without charging it a try and the scheduler
 * holds the queue until a relay is up.
 *
 * Pools: one nodemailer pooled transport per (relay, sending IP, shaping pool
 * key). STARTTLS is used when offered (required with `requireTls`), AUTH when
 * the URL carries user:pass, smtps:// for implicit TLS (RFC 3207, RFC 4954, RFC 8314).
 *
 * Config: delivery.relays, delivery.relayProbeScheduleSeconds ([1,2,3,5,5,5,10,15]),
 * delivery.maxConnections (20), delivery.messagesPerConnection (100),
 * delivery.timeoutSeconds (60), delivery.verifyCertificate (false),
 * engine.hostname (EHLO name).
 * Side effects: network connections (sends and probes).
 */
import type { RelayConfig } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import { RelayHealth, type RelayHealthStatus } from '../../common/relay-health.js';
import { makeTransport, redactUrl, SendFailure, sendVia, type BodySource, type SendEnvelope, type SendOutcome, type Transport } from '../../common/smtp-client.js';

export interface RelayPoolOptions {
  relays: readonly RelayConfig[];
  /** Seconds between probes of a down relay; the last repeats. */
  probeScheduleSeconds: readonly number[];
  /** Connections of the default pool per relay and sending IP. */
  maxConnections: number;
  messagesPerConnection: number;
  verifyCertificate: boolean;
  timeoutMs: number;
  clientName: string;
  /** Copies waiting while every relay is down, for the relay-down log line and status. */
  held: () => number;
  clock?: (() => number) | undefined;
  /** Timer for probes (tests drive it with their clock). */
  setTimer?: ((fn: () => void, ms: number) => () => void) | undefined;
}

/** Which pool a send uses: its sending IP and its destination's shaping. */
export interface PoolChoice {
  localAddress?: string | undefined;
  poolKey: string;
  maxConnections: number;
  messagesPerConnection: number;
}

interface Relay {
  cfg: RelayConfig;
  /** The URL without its password: the relay's name in logs, status and RelayHealth. */
  name: string;
  current: number;
  sent: number;
}

export interface RelayStatus extends RelayHealthStatus {
  weight: number;
  sent: number;
}

export class RelayPool {
  private readonly relays: Relay[];
  private readonly transports = new Map<string, Transport>();
  readonly health: RelayHealth;

  constructor(
    private readonly o: RelayPoolOptions,
    log: Logger,
  ) {
    this.relays = o.relays.map((cfg) => ({ cfg, name: redactUrl(cfg.url), current: 0, sent: 0 }));
    const byName = new Map(this.relays.map((r) => [r.name, r]));
    this.health = new RelayHealth({
      relays: this.relays.map((r) => r.name),
      probeScheduleSeconds: o.probeScheduleSeconds,
      // Through the default pool: a successful probe leaves a warm session for the first copies.
      probe: (name) => this.transport(byName.get(name)!, { poolKey: 'default', maxConnections: o.maxConnections, messagesPerConnection: o.messagesPerConnection }).probe(),
      held: o.held,
      unit: 'copies',
      log,
      clock: o.clock,
      setTimer: o.setTimer,
    });
  }

  /** Relays that are up, in the order to try them for one copy: the weighted pick first. */
  private order(): Relay[] {
    const up = this.relays.filter((r) => this.health.isUp(r.name));
    if (up.length === 0) return up;
    // Smooth weighted round-robin: add each weight, pick the largest, subtract the total.
    let total = 0;
    let best = up[0]!;
    for (const r of up) {
      r.current += r.cfg.weight;
      total += r.cfg.weight;
      if (r.current > best.current) best = r;
    }
    best.current -= total;
    return [best, ...up.filter((r) => r !== best)];
  }

  private transport(r: Relay, p: PoolChoice): Transport {
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
   * reply for 4xx/5xx, or without one when no relay is up or could be reached.
   */
  async send(envelope: SendEnvelope, openBody: () => Promise<BodySource>, pool: PoolChoice): Promise<SendOutcome> {
    let last: Error | undefined;
    for (const r of this.order()) {
      const res = await sendVia(r.name, this.transport(r, pool), envelope, openBody);
      if (res.kind === 'sent') {
        r.sent++;
        return res.outcome;
      }
      last = res.error;
      this.health.markDown(r.name, res.error);
    }
    throw new SendFailure(`no relay reachable: ${last?.message ?? 'every relay is down'}`, undefined, undefined);
  }

  status(): RelayStatus[] {
    const health = this.health.status();
    return this.relays.map((r, i) => ({ ...health[i]!, weight: r.cfg.weight, sent: r.sent }));
  }

  close(): void {
    this.health.close();
    for (const t of this.transports.values()) t.close();
    this.transports.clear();
  }
}
