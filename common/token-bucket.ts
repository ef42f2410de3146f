/*
 * token-bucket.ts — messages per second, as a token bucket (peak leveling).
 *
 * `ratePerSecond` tokens accrue continuously up to `burst`; starting one
 * message takes one token. With rate 0 the bucket is unlimited. The clock is
 * injected so tests can drive it. Used by WorkerLoop's `rate` option: the loop
 * leases no more messages than there are tokens, and sleeps until the next one.
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

export class TokenBucket implements RateLimit {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond);
    this.last = t;
  }

  available(): number {
    if (this.ratePerSecond <= 0) return Infinity;
    this.refill();
    return Math.floor(this.tokens);
  }

  msUntilNext(): number {
    if (this.ratePerSecond <= 0) return 0;
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.ratePerSecond) * 1000);
  }

  take(n: number): void {
    if (this.ratePerSecond <= 0) return;
    this.refill();
    this.tokens -= n;
  }
}
