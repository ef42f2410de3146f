/*
 * rate-meter.ts — the one sliding-window rate meter: events per second over
 * the last `windowSeconds` (one counter per second, in a ring), for drain
 * estimates (the forwarder's GET /status, the engine's GET /api/queue).
 *
 * Until the window has filled, the average is taken over a shorter span,
 * chosen by `since`:
 *   'start'       the seconds since the meter was made (the forwarder: a fresh
 *                 process that relayed nothing for a while reports a low rate);
 *   'first-mark'  the seconds since the oldest mark still in the window (the
 *                 engine: the rate of the copies that did leave).
 * The clock is injected so tests can drive it.
 *
 * Side effects: none.
 */

export interface RateMeterOptions {
  /** Default 60: long enough to smooth bursts, short enough to follow a pause or an outage. */
  windowSeconds?: number;
  since: 'start' | 'first-mark';
  /** Milliseconds; default Date.now. */
  now?: () => number;
}

export class RateMeter {
  private readonly window: number;
  private readonly since: RateMeterOptions['since'];
  private readonly now: () => number;
  /** Events per second, slot `second % window`, for the seconds up to `slotSecond`. */
  private readonly slots: number[];
  private slotSecond: number;
  private readonly startSecond: number;

  constructor(o: RateMeterOptions) {
    this.window = o.windowSeconds ?? 60;
    this.since = o.since;
    this.now = o.now ?? Date.now;
    this.slots = new Array<number>(this.window).fill(0);
    this.startSecond = Math.floor(this.now() / 1000);
    this.slotSecond = this.startSecond;
  }

  /** Moves the ring to the current second, clearing the seconds that fell out of the window. */
  private advance(): number {
    const sec = Math.floor(this.now() / 1000);
    if (sec - this.slotSecond >= this.window) this.slots.fill(0);
    else for (let s = this.slotSecond + 1; s <= sec; s++) this.slots[s % this.window] = 0;
    this.slotSecond = Math.max(this.slotSecond, sec);
    return this.slotSecond;
  }

  mark(n = 1): void {
    const sec = this.advance();
    this.slots[sec % this.window]! += n;
  }

  /** Events per second over the window (or the shorter span described above). */
  perSecond(): number {
    const sec = this.advance();
    let total = 0;
    let first = sec;
    for (let s = sec - this.window + 1; s <= sec; s++) {
      const v = this.slots[((s % this.window) + this.window) % this.window]!;
      if (v > 0 && s < first) first = s;
      total += v;
    }
    const span = this.since === 'start' ? Math.max(1, sec - this.startSecond) : sec - first + 1;
    return total / Math.min(this.window, span);
  }
}
