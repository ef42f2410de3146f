/*
 * token-bucket.ts — the one token bucket: messages per second with a burst
 * (the forwarder's peak leveling, the engine's per-domain shaping).
 *
 * `ratePerSecond` tokens accrue continuously up to the burst; starting one
 * message takes one token. With rate 0 the bucket is unlimited. The burst is a
 * number, or a function of the rate that `setRate` applies again (a domain
 * slowed by a back-pressure rule gets the smaller burst of its smaller rate).
 * The clock is injected so tests can drive it.
 *
 * Used by WorkerLoop's `rate` option (the loop leases no more messages than
 * there are tokens, and sleeps until the next one) and by the delivery
 * scheduler's lanes (`tryTake`).
 *
 * Side effects: none.
 */

export interface RateLimit {
  /** Whole messages that may start now (Infinity when unlimited). */
  available(): number;
  /** Milliseconds until at least one more message may start. */
  msUntilNext(): number;
  take(n: number): void;
}

export interface TokenBucketOptions {
  /** Tokens per second; 0 = unlimited. */
  ratePerSecond: number;
  /** Most tokens held, or how to derive it from the rate (default: a tenth of a second's worth, at least one). */
  burst?: number | ((ratePerSecond: number) => number);
  /** Milliseconds; default performance.now. */
  now?: () => number;
}

/** A tenth of a second's worth, at least one message: a 2 msg/s domain gets one message every 500 ms, not bursts. */
const TENTH_OF_A_SECOND = (rate: number): number => Math.max(1, rate / 10);

export class TokenBucket implements RateLimit {
  private rate: number;
  private burst: number;
  private tokens: number;
  private last: number;
  private readonly burstFor: (ratePerSecond: number) => number;
  private readonly now: () => number;

  constructor(o: TokenBucketOptions) {
    const b = o.burst ?? TENTH_OF_A_SECOND;
    this.burstFor = typeof b === 'number' ? () => b : b;
    this.now = o.now ?? (() => performance.now());
    this.rate = o.ratePerSecond;
    this.burst = this.burstFor(this.rate);
    this.tokens = this.burst;
    this.last = this.now();
  }

  get perSecond(): number {
    return this.rate;
  }

  /** A new rate from now on; the tokens held are kept up to the new burst. */
  setRate(ratePerSecond: number): void {
    this.refill();
    this.rate = ratePerSecond;
    this.burst = this.burstFor(ratePerSecond);
    this.tokens = Math.min(this.tokens, this.burst);
  }

  private refill(): void {
    const t = this.now();
    if (this.rate > 0) this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }

  available(): number {
    if (this.rate <= 0) return Infinity;
    this.refill();
    return Math.floor(this.tokens);
  }

  msUntilNext(): number {
    if (this.rate <= 0) return 0;
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }

  take(n: number): void {
    if (this.rate <= 0) return;
    this.refill();
    this.tokens -= n;
  }

  /** Takes one token if there is one: 0 when taken, else milliseconds until one is available (nothing taken). */
  tryTake(): number {
    if (this.rate <= 0) return 0;
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}
