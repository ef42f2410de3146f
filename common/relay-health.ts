/*
 * relay-health.ts — whether each next-hop relay is up, decided once for every
 * message instead of once per message.
 *
 * A relay that cannot be reached (connection refused or timed out, TLS
 * handshake, a refused STARTTLS or AUTH: anything before a reply to the
 * message itself, see smtp-client.ts `sendVia`) is marked DOWN. That is a
 * fact about the relay, so no message is charged an attempt or a backoff for
 * it: senders skip a down relay, and while every relay is down the queue holds
 * (the caller stops leasing). A down relay is probed on a schedule of its own
 * (connect, EHLO, STARTTLS, AUTH, QUIT: the session a send would open), a few
 * seconds at first and growing to the last entry of the schedule, which
 * repeats. The first successful probe marks it UP and the held messages are
 * released at once (by the caller, at its rate). Only a probe does: a send
 * that succeeds while the relay is down had started before it went down (a
 * down relay gets no new sends), and says nothing about it now — letting it
 * count made the state flap (down, up, down) while a listener shut down.
 * Replies from a reachable relay (4xx, 5xx) are not this file's business: they
 * keep the per-message retry schedule (retry-schedule.ts).
 *
 * Logs: one line per state change (up→down with the number of messages held
 * and the next probe, down→up with the outage length); failed probes only at
 * debug level, so a ten-minute outage is two lines, not one per message.
 *
 * Used by the forwarder (RelayClient, common/smtp-client.ts; config
 * forwarder.relay.probeScheduleSeconds) and the engine (RelayPool; config
 * delivery.relayProbeScheduleSeconds). The clock and the timer are injected so
 * tests drive a long outage without waiting for it.
 *
 * Side effects: timers; the probes' network connections.
 */
import type { Registry } from 'prom-client';
import { Gauge } from 'prom-client';
import type { Logger } from './log.js';
import { redactUrlsIn } from './redact.js';

export interface RelayHealthOptions {
  /** The relays, as they appear in logs and status (passwords already redacted). */
  relays: readonly string[];
  /** Seconds before the 1st, 2nd, … probe of a down relay; the last entry repeats. */
  probeScheduleSeconds: readonly number[];
  /** Opens a session as a send would and closes it; rejects when the relay is still unreachable. */
  probe: (relay: string) => Promise<void>;
  /** How many messages wait while every relay is down (for logs and status). */
  held: () => number;
  /** What the held things are called in log lines ("messages", "copies"). */
  unit: string;
  log: Logger;
  clock?: (() => number) | undefined;
  /** Arms a timer and returns its cancel; tests pass their own and call `probeDue()`. */
  setTimer?: ((fn: () => void, ms: number) => () => void) | undefined;
}

export type RelayState = 'up' | 'down';

export interface RelayHealthStatus {
  relay: string;
  state: RelayState;
  /** ISO time the relay went down; null while up. */
  downSince: string | null;
  nextProbeAt: string | null;
  nextProbeInSeconds: number | null;
  /** Why it is down: the connection error of the send or probe that found it so. */
  lastError: string | null;
  /** Probes that failed since it went down. */
  failedProbes: number;
  /** Messages waiting for it: all of them while every relay is down, else 0 (the others take its share). */
  held: number;
}

/** What a down-marking is told about the failure (nodemailer's error shape). */
export interface ConnectionError {
  code?: string | undefined;
  message: string;
}

interface State {
  relay: string;
  up: boolean;
  since: number;
  nextProbeAt: number;
  failedProbes: number;
  lastError: string;
  probing: boolean;
}

/** A connection error in words, for logs and status: never with a URL's password in it (redact.ts). */
function reasonOf(err: ConnectionError): string {
  return redactUrlsIn(err.code ? `${err.code}: ${err.message}` : String(err.message));
}

function realTimer(fn: () => void, ms: number): () => void {
  const t = setTimeout(fn, ms);
  t.unref();
  return () => clearTimeout(t);
}

export class RelayHealth {
  private readonly states: State[];
  private readonly byRelay = new Map<string, State>();
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => () => void;
  private readonly listeners: Array<(relay: string, state: RelayState) => void> = [];
  private cancelTimer: (() => void) | undefined;
  private closed = false;

  constructor(private readonly o: RelayHealthOptions) {
    if (o.probeScheduleSeconds.length === 0) throw new Error('relay probe schedule is empty');
    this.now = o.clock ?? Date.now;
    this.setTimer = o.setTimer ?? realTimer;
    this.states = o.relays.map((relay) => ({ relay, up: true, since: 0, nextProbeAt: 0, failedProbes: 0, lastError: '', probing: false }));
    for (const s of this.states) this.byRelay.set(s.relay, s);
  }

  isUp(relay: string): boolean {
    return this.byRelay.get(relay)?.up ?? true;
  }

  /** True while no relay is up: the caller holds its queue. */
  get allDown(): boolean {
    return this.states.length > 0 && this.states.every((s) => !s.up);
  }

  /** Called on every state change (after the log line). */
  onChange(fn: (relay: string, state: RelayState) => void): void {
    this.listeners.push(fn);
  }

  /** Seconds to wait after `failed` failed probes (the last schedule entry repeats). */
  probeIntervalSeconds(failed: number): number {
    const s = this.o.probeScheduleSeconds;
    return s[Math.min(failed, s.length - 1)]!;
  }

  /** A send (or probe) could not reach the relay. Only the first of a burst changes anything. */
  markDown(relay: string, err: ConnectionError): void {
    const s = this.byRelay.get(relay);
    if (!s) return;
    const reason = reasonOf(err);
    if (!s.up) {
      s.lastError = reason;
      return;
    }
    const now = this.now();
    s.up = false;
    s.since = now;
    s.failedProbes = 0;
    s.lastError = reason;
    s.nextProbeAt = now + this.probeIntervalSeconds(0) * 1000;
    const all = this.allDown;
    const held = all ? this.o.held() : 0;
    const next = this.probeIntervalSeconds(0);
    const what = all ? `holding ${held} ${this.o.unit}` : 'the other relays take its share';
    this.o.log.warn({ event: 'relay-down', relay, reason, held, allDown: all, nextProbeInSeconds: next }, `relay down, ${what}, next probe in ${next} s`);
    this.arm();
    this.emit(relay, 'down');
  }

  /** A probe reached the relay: it is up, and whatever waited for it may go. */
  private markUp(relay: string): void {
    const s = this.byRelay.get(relay);
    if (!s || s.up) return;
    const wasAllDown = this.allDown;
    const held = wasAllDown ? this.o.held() : 0;
    s.up = true;
    const downFor = Math.round((this.now() - s.since) / 1000);
    this.o.log.info(
      { event: 'relay-up', relay, downForSeconds: downFor, failedProbes: s.failedProbes, released: held },
      wasAllDown ? `relay up after ${downFor} s, releasing ${held} ${this.o.unit}` : `relay up after ${downFor} s`,
    );
    s.failedProbes = 0;
    s.lastError = '';
    this.arm();
    this.emit(relay, 'up');
  }

  /** Runs the probe of every down relay whose time has come; resolves when they are done. */
  async probeDue(): Promise<void> {
    const now = this.now();
    const due = this.states.filter((s) => !s.up && !s.probing && s.nextProbeAt <= now);
    await Promise.all(due.map((s) => this.probeOne(s)));
    this.arm();
  }

  private async probeOne(s: State): Promise<void> {
    s.probing = true;
    try {
      await this.o.probe(s.relay);
      s.probing = false;
      this.markUp(s.relay);
    } catch (e) {
      s.probing = false;
      if (s.up) return; // a send got through meanwhile
      const err = e as ConnectionError;
      s.failedProbes++;
      s.lastError = reasonOf(err);
      const next = this.probeIntervalSeconds(s.failedProbes);
      s.nextProbeAt = this.now() + next * 1000;
      this.o.log.debug({ event: 'relay-probe-failed', relay: s.relay, reason: s.lastError, failedProbes: s.failedProbes, nextProbeInSeconds: next }, 'relay still down');
    }
  }

  /** One timer for the earliest probe due. */
  private arm(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    if (this.closed) return;
    const waiting = this.states.filter((s) => !s.up && !s.probing);
    if (waiting.length === 0) return;
    const at = Math.min(...waiting.map((s) => s.nextProbeAt));
    this.cancelTimer = this.setTimer(() => {
      this.cancelTimer = undefined;
      void this.probeDue();
    }, Math.max(0, at - this.now()));
  }

  private emit(relay: string, state: RelayState): void {
    for (const fn of this.listeners) fn(relay, state);
  }

  status(): RelayHealthStatus[] {
    const now = this.now();
    const held = this.allDown ? this.o.held() : 0;
    return this.states.map((s) => ({
      relay: s.relay,
      state: s.up ? 'up' : 'down',
      downSince: s.up ? null : new Date(s.since).toISOString(),
      nextProbeAt: s.up ? null : new Date(s.nextProbeAt).toISOString(),
      nextProbeInSeconds: s.up ? null : Math.max(0, Math.ceil((s.nextProbeAt - now) / 1000)),
      lastError: s.up ? null : s.lastError,
      failedProbes: s.failedProbes,
      held: s.up ? 0 : held,
    }));
  }

  close(): void {
    this.closed = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }
}

/**
 * Per-relay gauges on a prom-client registry, read at scrape time:
 * `<prefix>_relay_up`, `_relay_down_since_seconds` (Unix time, 0 while up),
 * `_relay_next_probe_seconds` (seconds to the next probe, 0 while up) and
 * `_relay_held` (messages waiting for it), each labelled `relay`.
 */
export function registerRelayGauges(registry: Registry, prefix: string, status: () => RelayHealthStatus[]): void {
  const gauge = (name: string, help: string, pick: (s: RelayHealthStatus) => number): void => {
    new Gauge({
      name: `${prefix}_${name}`,
      help,
      labelNames: ['relay'],
      registers: [registry],
      collect() {
        for (const s of status()) this.set({ relay: s.relay }, pick(s));
      },
    });
  };
  gauge('relay_up', '1 while the relay is reachable, 0 while it is down and probed', (s) => (s.state === 'up' ? 1 : 0));
  gauge('relay_down_since_seconds', 'Unix time the relay went down (0 while up)', (s) => (s.downSince ? Date.parse(s.downSince) / 1000 : 0));
  gauge('relay_next_probe_seconds', 'Seconds until the next probe of a down relay (0 while up)', (s) => s.nextProbeInSeconds ?? 0);
  gauge('relay_held', 'Messages held because no relay is up', (s) => s.held);
}
