/*
 * Time and async control for unit tests: a fake clock whose timers fire only
 * when the test moves it (`advance`), `until` to wait for asynchronous work
 * (LevelDB round trips) to reach a state, and `deferred` to hold a handler
 * open until the test releases it. Pass `clock.now` as a module's clock and
 * the clock itself as its `timers` (common/worker-loop.ts's Timers).
 */
import type { Timers } from '../../common/worker-loop.js';

/** 2030-01-01T00:00:00Z: far from any real timestamp, so a stray Date.now shows up. */
export const FAKE_EPOCH = Date.UTC(2030, 0, 1);

interface Pending {
  at: number;
  fn: () => void;
}

export class FakeClock implements Timers {
  private t: number;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(start = FAKE_EPOCH) {
    this.t = start;
  }

  readonly now = (): number => this.t;

  readonly setTimeout = (fn: () => void, ms: number): number => {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };

  readonly clearTimeout = (handle: unknown): void => {
    this.pending.delete(handle as number);
  };

  /** Delays (from now) of the timers not yet fired, shortest first. */
  get timers(): number[] {
    return [...this.pending.values()].map((p) => p.at - this.t).sort((a, b) => a - b);
  }

  /** Moves the clock `ms` forward, firing each timer due by then at its own instant, in due order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, Pending] | undefined;
      for (const e of this.pending) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.pending.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
}

/** Resolves once `cond()` holds (checked every millisecond of real time); fails after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, what = 'condition', timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

export interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
