/*
 * intake-first.ts — while apps send faster than the forwarder's one event loop
 * can both take and relay, taking goes first: the relay steps back to a
 * trickle, and the spool absorbs the peak.
 *
 * Why (issue #17): the forwarder exists to level peaks. An app waits for each
 * 250 (a lock-step SMTP client cannot send its next message before it), while
 * the hop to the listener can fall a few seconds behind and catch up at once.
 * Both halves run on the same event loop, so when it is saturated every relay
 * callback delays an app's reply. Measured with `npm run bench --
 * forwarder-parts` (2 KB × 15,000 over 20 reused connections, 2026-12-03):
 * intake alone 5,104 msgs/s, intake with the relay running at its full
 * concurrency 2,562, with the relay at one message at a time 4,845; the relay
 * alone drains at ~7,000/s once the peak is over.
 *
 * Where the next hop shares the machine's cores (`postino up`), holding the
 * relay back idles it during the burst and end to end suffers (common/config.ts
 * has the figures): `up` sets relay.yieldToIntakeSeconds to 0. The forwarder
 * appliance, on its own machine next to the apps, has it on (10 s).
 *
 * The rule, sampled every SAMPLE_MS while apps hand over messages:
 *   busy      the loop's utilisation (perf_hooks' eventLoopUtilization: the
 *             share of time not waiting in epoll) was at least BUSY_ENTER over
 *             the last ENTER_SAMPLES samples (50 ms) and apps handed over at
 *             least BUSY_MESSAGES messages in them (400 a second); once busy,
 *             it stays so until, over the last LEAVE_WINDOW_SAMPLES samples
 *             (100 ms), the utilisation fell below BUSY_LEAVE or fewer than
 *             BUSY_MESSAGES messages came (200 a second). Hysteresis both
 *             ways: one relay burst or one quiet moment must not flip it.
 *             Quicker to enter than to leave: at the start of an `smtp-source
 *             -d` burst the relay at full concurrency kept pace with intake,
 *             which took half its rate until the rule saw the loop saturated
 *             (forwarder.log, 2026-12-05, one 100 ms sample for both: 120-196
 *             messages taken and 97-191 relayed per 50 ms for the first 150-200
 *             ms, then 250-420 taken and 4-5 relayed). Left on 25 ms alone, the
 *             rule flapped through the burst, the relay running in bursts of
 *             80-200 a 50 ms.
 *             Why a count as well as the utilisation: one lock-step client
 *             opening a connection per message (PHP's mail(), a cron job, the
 *             burst test's light load) takes 2-5 messages a 25 ms sample here
 *             and keeps the loop at 0.5-0.9 throughout, warm or not: every
 *             reply's `write` wakes a peer asleep in epoll, the dearest part of
 *             a loopback write on this VM (cpu profile, 2026-12-05: 0.8 ms of
 *             socket writes a message, intake's replies and the relay's).
 *             Judged on 50 ms of utilisation alone, 20 such messages stepped
 *             the relay back in 7 runs of 12, and CI failed on it. A burst the
 *             rule is for hands over 60-100 a sample at 2 KB even while the
 *             relay still shares the loop, 25-33 at 100 KB.
 *   yielding  busy, and the last message the relay leased for its first attempt
 *             had waited in the spool at most `maxWaitMs` (relay.yieldToIntakeSeconds).
 * While yielding, the relay starts at most YIELD_RELAY_RATE messages a second,
 * one every 1000/YIELD_RELAY_RATE ms (a token bucket of one, layered on the
 * relay's own rate cap). How many are in flight then follows from the link:
 * next to the listener (loopback, a LAN) a message is done long before the
 * next starts; over a slow link, where a message in flight costs the loop
 * nothing while it waits for replies, more overlap, so the relay's progress
 * during a peak does not fall with the link's round trip. (The rule used to
 * cap the messages in flight instead, at least one: next to the listener one
 * in flight is a message every ~3 ms, and the "trickle" was 250-350 a second
 * under smtp-source -d, 2026-12-03 — see docs/performance-log.md.) The relay
 * always moves, and a message's wait is measured from what it leases;
 * past the wait bound it runs at full concurrency again, shares the loop as
 * before, and drains the backlog until the waits are short. So a steady
 * overload costs what it did before this rule, with at most `maxWaitMs` of
 * backlog; a burst is taken at intake speed.
 * Below saturation nothing changes: an idle or lightly loaded forwarder relays
 * every message the moment it is spooled.
 *
 * A retried message ends yielding, and so does one held through an outage
 * longer than `maxWaitMs` (given back uncharged, its wait counts from its
 * arrival): catching up after an outage is the relay's turn.
 *
 * Side effects: one unref'd interval timer between start() and stop(), running
 * while messages arrive (an idle forwarder has none: the next message sets it).
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { TokenBucket, type RateLimit } from '../common/token-bucket.js';

/** How often the loop's utilisation is read: short against a peak's start, long against one callback. */
export const SAMPLE_MS = 25;
/** Samples the entry is judged over (50 ms; two, not one: a single collection or compile can fill one 25 ms sample). */
export const ENTER_SAMPLES = 2;
/** Samples the leave is judged over (100 ms: the rule's one sample until 2026-12-05). */
export const LEAVE_WINDOW_SAMPLES = 4;
/**
 * Messages apps must hand over in the entry window (and, to stay busy, in the leave window) for
 * a saturated loop to count as their burst: 20 in 50 ms is 400 a second, twice what one lock-step
 * client sending a message per connection reaches here (80-200); 20 sessions of `smtp-source`
 * hand over 1,000-1,300 a second at 100 KB (`bench -- forwarder`, 2026-12-05).
 */
export const BUSY_MESSAGES = 20;

interface Sample {
  /** The loop's utilisation over the sample. */
  u: number;
  /** Messages apps handed over in it. */
  accepted: number;
}

const meanUtilization = (samples: readonly Sample[]): number => samples.reduce((sum, s) => sum + s.u, 0) / samples.length;
const acceptedIn = (samples: readonly Sample[]): number => samples.reduce((sum, s) => sum + s.accepted, 0);

/**
 * Utilisation from which the loop counts as saturated (with BUSY_MESSAGES: one lock-step
 * client alone can read above it here). 0.8, not 0.9: at the start of an
 * `smtp-source -d` burst with the relay at full concurrency, the loop read 0.79-0.89 for up to
 * 400 ms while the apps got a third of their rate (121-195 messages a 100 ms sample, against
 * 350-530 once the relay stepped back): on two cores the relay's sink and sockets take CPU the
 * apps' sessions need before the loop itself is full. Paired rounds of 15,000 (issue #17,
 * thirty-third round): messages relayed during a round, median 1,215 at 0.9 against 654 at 0.8.
 */
export const BUSY_ENTER = 0.8;
/** Utilisation below which it no longer does. */
export const BUSY_LEAVE = 0.7;
/**
 * Messages a second the relay still starts while yielding: at 0.12-0.34 ms of loop a
 * relayed message, 1-4% of the loop; the default 10-second wait bound is reached only
 * by a backlog of 1,000 messages or more.
 */
export const YIELD_RELAY_RATE = 100;

export interface IntakeFirstOptions {
  /** The longest a new message waits in the spool because intake went first; 0 = the relay never steps back. */
  maxWaitMs: number;
  /** Utilisation of the event loop since the previous call (0..1). Default: perf_hooks. */
  utilization?: () => number;
  /** Milliseconds, for the waits and the pacing. Default: Date.now for the waits (queue records hold wall-clock times), performance.now for the pacing. */
  now?: () => number;
  /** After each sample: whether the relay is stepping back now (the forwarder's metrics). */
  onSample?: (yielding: boolean) => void;
}

/** performance.eventLoopUtilization() between calls. */
function loopUtilization(): () => number {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return u;
  };
}

export class IntakeFirst {
  private readonly maxWaitMs: number;
  private readonly utilization: () => number;
  private readonly now: () => number;
  private acceptedInSample = 0;
  private busy = false;
  /** The last LEAVE_WINDOW_SAMPLES samples; from the entry's on while busy (a leave is judged on a whole window of them). */
  private window: Sample[] = [];
  /** Between start() and stop(): the timer runs while messages arrive. */
  private started = false;
  /** How long the last message leased for its first attempt had waited in the spool. */
  private lastWaitMs = 0;
  /** One token, YIELD_RELAY_RATE a second: the relay's starts while yielding. */
  private readonly pace: TokenBucket;
  private timer: NodeJS.Timeout | undefined;
  private readonly onSample: (yielding: boolean) => void;

  constructor(o: IntakeFirstOptions) {
    this.maxWaitMs = o.maxWaitMs;
    this.utilization = o.utilization ?? loopUtilization();
    this.now = o.now ?? Date.now;
    this.onSample = o.onSample ?? (() => undefined);
    this.pace = new TokenBucket({ ratePerSecond: YIELD_RELAY_RATE, burst: 1, now: o.now ?? (() => performance.now()) });
  }

  start(): void {
    if (this.started || this.maxWaitMs <= 0) return;
    this.started = true;
    this.arm();
  }

  stop(): void {
    this.started = false;
    this.disarm();
    this.busy = false;
  }

  /** Intake spooled a message. */
  noteAccepted(): void {
    this.acceptedInSample++;
    if (this.started && !this.timer) this.arm();
  }

  private arm(): void {
    this.utilization(); // the first sample starts now
    this.window = [];
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
  }

  private disarm(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The relay leased `rec`; `attempts` counts this attempt. */
  noteLeased(rec: { enqueuedAt: number; attempts: number }): void {
    this.lastWaitMs = rec.attempts <= 1 ? this.now() - rec.enqueuedAt : Number.POSITIVE_INFINITY;
  }

  /** One sampling step (the timer's; tests call it directly). */
  sample(): void {
    const accepted = this.acceptedInSample;
    this.acceptedInSample = 0;
    this.window.push({ u: this.utilization(), accepted });
    if (this.window.length > LEAVE_WINDOW_SAMPLES) this.window.shift();
    const full = this.window.length === LEAVE_WINDOW_SAMPLES;
    if (!this.busy) {
      const recent = this.window.slice(-ENTER_SAMPLES);
      if (recent.length === ENTER_SAMPLES && acceptedIn(recent) >= BUSY_MESSAGES && meanUtilization(recent) >= BUSY_ENTER) {
        this.busy = true;
        this.window = recent;
      }
    } else if (full) {
      this.busy = acceptedIn(this.window) >= BUSY_MESSAGES && meanUtilization(this.window) >= BUSY_LEAVE;
    }
    this.onSample(this.yielding);
    // A whole window without a message, the rule at rest: no timer until the next message.
    if (!this.busy && full && acceptedIn(this.window) === 0) this.disarm();
  }

  get yielding(): boolean {
    return this.maxWaitMs > 0 && this.busy && this.lastWaitMs <= this.maxWaitMs;
  }

  /**
   * The relay's rate limit: `inner` (the configured cap), and while yielding also one start
   * every 1000/YIELD_RELAY_RATE ms (WorkerLoop's `rate`: it leases no more than available()
   * and sleeps msUntilNext() when that is below one).
   */
  relayRate(inner: RateLimit): RateLimit {
    return {
      available: () => (this.yielding ? Math.min(inner.available(), this.pace.available()) : inner.available()),
      msUntilNext: () => (this.yielding ? Math.max(inner.msUntilNext(), this.pace.msUntilNext()) : inner.msUntilNext()),
      take: (n) => {
        inner.take(n);
        if (this.yielding) this.pace.take(n);
      },
    };
  }
}
