/*
 * scheduler.ts — from the durable delivery queue into bounded in-memory
 * ready lanes, one per destination domain, and out to the sender under each
 * domain's shaping. Throttling one domain never delays another (no
 * head-of-line blocking), and transactional copies go before bulk copies of
 * the same domain (priority lanes).
 *
 * Flow: the lease loop leases due copies (in due order) and routes each into
 * its domain's lane. A lane holds at most `laneLookaheadSeconds` of its rate
 * (at least 20, at most `laneMax`); a copy that finds its lane full goes back
 * to disk, due when the lane should have room (spaced at the lane's rate), so
 * a 10,000-copy backlog for a slow domain sits on disk, not in memory, and the
 * lease loop reaches other domains' copies behind it. A transactional copy
 * that finds a full lane takes the place of the lane's last bulk copy.
 * Dispatch: per lane, while fewer than `maxConnections` copies are in flight
 * and the token bucket gives a token, the next copy (transactional first) is
 * handed to the sender; a lane waiting for a token sets its own timer.
 *
 * Back-pressure: `suspend` empties the lane back to disk until the suspension
 * ends; `slow` lowers the lane's rate until it ends.
 * Kill-switch: a global pause stops leasing and returns every lane's copies to
 * disk; a paused account's copies go back to disk and are re-checked every
 * `pausedRecheckSeconds`. In-flight transactions always complete.
 * Relays down (relay-pool.ts, common/relay-health.ts): while every relay of the
 * MTA cluster is down, the scheduler holds like a global pause — nothing is
 * leased or dispatched and the lanes go back to disk, no copy charged a try —
 * and when a probe finds a relay up it leases and dispatches again at once,
 * under each domain's shaping.
 *
 * Time is injected (`clock`, `timers`; the real ones by default) so tests
 * drive rates, suspensions and overflow due times without sleeping.
 *
 * Config: delivery.readyMax (20000), delivery.laneMax (2000),
 * delivery.laneLookaheadSeconds (5), delivery.pausedRecheckSeconds (5),
 * delivery.shaping. Side effects: queue leases and reschedules (unsynced).
 */
import { domainOf } from '../../common/address.js';
import type { BackPressureRule, DeliveryConfig } from '../../common/config.js';
import type { DurableQueue, QueueRecord } from '../../common/durable-queue.js';
import type { Logger } from '../../common/log.js';
import type { RelayState } from '../../common/relay-health.js';
import type { BatchOp } from '../../common/store.js';
import { TokenBucket } from '../../common/token-bucket.js';
import { realTimers, type Timers } from '../../common/worker-loop.js';
import type { DeliveryMeta } from './delivery-record.js';
import type { DeliveryPause } from './delivery-pause.js';
import { shapingFor, type DomainShaping } from './shaping.js';
import { NOTIFY_TAG } from '../../common/events.js';

/** A paused account's mail waits, but not our notices to it (why it was paused: engine/events/reputation-brake.ts). */
function held(k: DeliveryPause, m: DeliveryMeta): boolean {
  return k.globalPaused || (k.isPaused(m.account) && m.tag !== NOTIFY_TAG);
}

type Rec = QueueRecord<DeliveryMeta>;

/** Copies leased per LevelDB round trip. */
const LEASE_BATCH = 500;
/** A limited lane always holds at least this many, so short gaps never starve it. */
const LANE_MIN = 20;
/** Empty lanes are forgotten after this long idle (their bucket and overflow schedule with them). */
const LANE_IDLE_MS = 60_000;
/** Lane full at no rate limit: look again this much later. */
const UNLIMITED_OVERFLOW_MS = 1_000;

class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  pop(): T | undefined {
    if (this.length === 0) return undefined;
    return this.items.pop();
  }
  drain(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}

export interface LaneStatus {
  domain: string;
  ready: number;
  inFlight: number;
  messagesPerSecond: number;
  maxConnections: number;
  suspendedUntil?: string | undefined;
  slowedUntil?: string | undefined;
  rule?: string | undefined;
}

class Lane {
  readonly tx = new Fifo<Rec>();
  readonly bulk = new Fifo<Rec>();
  readonly bucket: TokenBucket;
  inFlight = 0;
  suspendedUntil = 0;
  slowUntil = 0;
  rule: string | undefined;
  overflowDue = 0;
  lastUsed: number;
  timer: unknown;

  constructor(
    readonly domain: string,
    readonly shaping: DomainShaping,
    clock: () => number,
  ) {
    this.bucket = new TokenBucket({ ratePerSecond: shaping.params.messagesPerSecond, now: clock });
    this.lastUsed = clock();
  }

  get size(): number {
    return this.tx.length + this.bulk.length;
  }

  cap(laneMax: number, lookaheadSeconds: number): number {
    const rate = this.bucket.perSecond;
    return rate > 0 ? Math.min(laneMax, Math.max(LANE_MIN, Math.ceil(rate * lookaheadSeconds))) : laneMax;
  }
}

export interface SchedulerOptions {
  queue: DurableQueue<DeliveryMeta>;
  config: DeliveryConfig;
  killSwitch: DeliveryPause;
  /** The relays' state: hold while every one is down (RelayHealth). */
  relays?: { readonly allDown: boolean; onChange(fn: (relay: string, state: RelayState) => void): void } | undefined;
  visibilityMs: number;
  /** Sends one copy and records its outcome; returns the back-pressure rule its reply matched. */
  handle: (rec: Rec) => Promise<BackPressureRule | undefined>;
  log: Logger;
  clock?: () => number;
  /** Lane token waits and lease-loop waits. Default the real setTimeout (tests pass a fake clock's). */
  timers?: Timers;
  idleWaitMs?: number;
  retryOnCrashMs?: number;
}

export class DeliveryScheduler {
  private readonly lanes = new Map<string, Lane>();
  private readonly now: () => number;
  private readonly timers: Timers;
  private running = false;
  private abort = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private wakeLoop: (() => void) | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private ready = 0;
  private lastSweep = 0;

  constructor(private readonly o: SchedulerOptions) {
    this.now = o.clock ?? Date.now;
    this.timers = o.timers ?? realTimers;
    o.killSwitch.onChange(() => void this.onPauseChange());
    o.relays?.onChange(() => void this.onRelaysChange());
  }

  /** Held by the operator (global pause) or because no relay is up. */
  private get holding(): boolean {
    return this.o.killSwitch.globalPaused || (this.o.relays?.allDown ?? false);
  }

  get readyCount(): number {
    return this.ready;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.loopDone = this.leaseLoop();
  }

  /** Stops leasing and dispatching, waits for in-flight sends, returns lane copies to disk. */
  async stop(): Promise<void> {
    this.running = false;
    this.abort.abort();
    this.wake();
    await this.loopDone;
    for (const l of this.lanes.values()) this.timers.clearTimeout(l.timer);
    await Promise.allSettled([...this.inFlight]);
    await this.releaseWhere(() => true, () => this.now());
  }

  lanesStatus(): LaneStatus[] {
    const now = this.now();
    return [...this.lanes.values()].map((l) => ({
      domain: l.domain,
      ready: l.size,
      inFlight: l.inFlight,
      messagesPerSecond: l.bucket.perSecond,
      maxConnections: l.shaping.params.maxConnections,
      suspendedUntil: l.suspendedUntil > now ? new Date(l.suspendedUntil).toISOString() : undefined,
      slowedUntil: l.slowUntil > now ? new Date(l.slowUntil).toISOString() : undefined,
      rule: l.suspendedUntil > now || l.slowUntil > now ? l.rule : undefined,
    }));
  }

  private wake(): void {
    const w = this.wakeLoop;
    this.wakeLoop = undefined;
    w?.();
  }

  private waitForWake(maxMs: number): Promise<void> {
    const timers = this.timers;
    return new Promise<void>((resolve) => {
      const t = timers.setTimeout(done, maxMs);
      const signal = this.abort.signal;
      function done(): void {
        timers.clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      this.wakeLoop = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private lane(domain: string): Lane {
    let l = this.lanes.get(domain);
    if (!l) {
      l = new Lane(domain, shapingFor(this.o.config.shaping, domain), this.now);
      this.lanes.set(domain, l);
    }
    return l;
  }

  private async leaseLoop(): Promise<void> {
    const { queue, config, log } = this.o;
    const idle = this.o.idleWaitMs ?? 5_000;
    while (this.running) {
      if (this.holding) {
        await this.waitForWake(idle);
        continue;
      }
      const room = config.readyMax - this.ready - this.inFlight.size;
      if (room <= 0) {
        await this.waitForWake(idle);
        continue;
      }
      let batch: Rec[];
      try {
        batch = await queue.lease(Math.min(LEASE_BATCH, room), this.o.visibilityMs);
      } catch (err) {
        log.error({ err }, 'delivery lease failed');
        await this.waitForWake(1_000);
        continue;
      }
      if (batch.length === 0) {
        this.sweep();
        await queue.waitForWork(idle, this.abort.signal);
        continue;
      }
      const back: Array<{ rec: Rec; due: number }> = [];
      for (const rec of batch) this.route(rec, back);
      await this.giveBack(back);
      if (!this.running) return;
      for (const l of this.lanes.values()) if (l.size > 0) this.pump(l);
    }
  }

  private route(rec: Rec, back: Array<{ rec: Rec; due: number }>): void {
    const now = this.now();
    const { config, killSwitch } = this.o;
    if (!this.running || held(killSwitch, rec.meta)) {
      back.push({ rec, due: this.running ? now + config.pausedRecheckSeconds * 1000 : now });
      return;
    }
    const l = this.lane(domainOf(rec.meta.recipient));
    l.lastUsed = now;
    if (l.suspendedUntil > now) {
      back.push({ rec, due: l.suspendedUntil });
      return;
    }
    if (l.size >= l.cap(config.laneMax, config.laneLookaheadSeconds)) {
      const bumped = rec.meta.stream === 'transactional' ? l.bulk.pop() : undefined;
      const out = bumped ?? rec;
      if (bumped) l.tx.push(rec);
      const rate = l.bucket.perSecond;
      let due: number;
      if (rate > 0) {
        l.overflowDue = Math.max(l.overflowDue, now + (l.size / rate) * 1000) + 1000 / rate;
        due = l.overflowDue;
      } else {
        due = now + UNLIMITED_OVERFLOW_MS;
      }
      back.push({ rec: out, due });
      return;
    }
    (rec.meta.stream === 'transactional' ? l.tx : l.bulk).push(rec);
    this.ready++;
  }

  /** Returns copies to the durable queue in one batch. */
  private async giveBack(back: Array<{ rec: Rec; due: number }>): Promise<void> {
    if (back.length === 0) return;
    const q = this.o.queue;
    const held = back.filter((b) => q.holds(b.rec));
    const ops: BatchOp[] = held.flatMap((b) => q.nackOps(b.rec, b.due));
    try {
      await q.store.commit(ops, { sync: false });
      for (const b of held) q.nacked(b.rec);
    } catch (err) {
      // The leases expire on their own; the copies come back then.
      this.o.log.error({ err, copies: held.length }, 'could not return copies to the delivery queue');
    }
  }

  private pump(l: Lane): void {
    if (l.timer || !this.running || this.holding) return;
    const now = this.now();
    if (l.slowUntil > 0 && now >= l.slowUntil) {
      l.slowUntil = 0;
      l.bucket.setRate(l.shaping.params.messagesPerSecond);
    }
    while (l.size > 0 && l.inFlight < l.shaping.params.maxConnections) {
      const wait = l.bucket.tryTake();
      if (wait > 0) {
        l.timer = this.timers.setTimeout(() => {
          l.timer = undefined;
          this.pump(l);
        }, wait);
        return;
      }
      const rec = (l.tx.shift() ?? l.bulk.shift())!;
      this.ready--;
      this.dispatch(l, rec);
    }
  }

  private dispatch(l: Lane, rec: Rec): void {
    l.inFlight++;
    const p = this.o
      .handle(rec)
      .then((rule) => {
        if (rule) this.applyRule(l, rule);
      })
      .catch(async (err: unknown) => {
        this.o.log.error({ err, queueId: rec.id }, 'delivery handler failed; the copy returns to the queue');
        await this.o.queue.nack(rec, this.now() + (this.o.retryOnCrashMs ?? 60_000)).catch(() => undefined);
      })
      .finally(() => {
        l.inFlight--;
        l.lastUsed = this.now();
        this.inFlight.delete(p);
        this.pump(l);
        this.wake();
      });
    this.inFlight.add(p);
  }

  /** A provider asked us to back off: suspend (lane back to disk) or slow the domain. */
  private applyRule(l: Lane, rule: BackPressureRule): void {
    const now = this.now();
    const until = now + rule.seconds * 1000;
    l.rule = rule.name;
    switch (rule.action) {
      case 'suspend': {
        if (l.suspendedUntil >= until) return;
        l.suspendedUntil = until;
        const recs = [...l.tx.drain(), ...l.bulk.drain()];
        this.ready -= recs.length;
        void this.giveBack(recs.map((rec) => ({ rec, due: until })));
        this.o.log.warn({ event: 'destination-suspended', domain: l.domain, rule: rule.name, until: new Date(until).toISOString() }, 'destination suspended by back-pressure rule');
        return;
      }
      case 'slow': {
        const base = l.shaping.params.messagesPerSecond;
        l.slowUntil = until;
        l.bucket.setRate(base > 0 ? Math.min(base, rule.messagesPerSecond) : rule.messagesPerSecond);
        this.o.log.warn({ event: 'destination-slowed', domain: l.domain, rule: rule.name, messagesPerSecond: rule.messagesPerSecond, until: new Date(until).toISOString() }, 'destination slowed by back-pressure rule');
        return;
      }
    }
  }

  /** Returns lane copies matching `which` to disk, due at `due()`. */
  private async releaseWhere(which: (rec: Rec) => boolean, due: () => number): Promise<void> {
    const back: Array<{ rec: Rec; due: number }> = [];
    for (const l of this.lanes.values()) {
      for (const q of [l.tx, l.bulk]) {
        const keep: Rec[] = [];
        for (const rec of q.drain()) {
          if (which(rec)) back.push({ rec, due: due() });
          else keep.push(rec);
        }
        for (const rec of keep) q.push(rec);
      }
    }
    this.ready -= back.length;
    await this.giveBack(back);
  }

  private async onPauseChange(): Promise<void> {
    const k = this.o.killSwitch;
    const recheck = this.o.config.pausedRecheckSeconds * 1000;
    if (k.globalPaused) await this.releaseWhere(() => true, () => this.now());
    else await this.releaseWhere((r) => held(k, r.meta), () => this.now() + recheck);
    this.wake();
    for (const l of this.lanes.values()) if (l.size > 0) this.pump(l);
  }

  /** Every relay down: lanes back to disk (due now, so in order when a relay returns). A relay up: lease and dispatch again. */
  private async onRelaysChange(): Promise<void> {
    if (this.o.relays?.allDown) await this.releaseWhere(() => true, () => this.now());
    this.wake();
    for (const l of this.lanes.values()) if (l.size > 0) this.pump(l);
  }

  private sweep(): void {
    const now = this.now();
    if (now - this.lastSweep < LANE_IDLE_MS) return;
    this.lastSweep = now;
    for (const [d, l] of this.lanes) {
      if (l.size === 0 && l.inFlight === 0 && !l.timer && l.suspendedUntil <= now && l.slowUntil <= now && now - l.lastUsed > LANE_IDLE_MS) this.lanes.delete(d);
    }
  }
}
