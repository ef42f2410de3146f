/*
 * retry-schedule.ts — when to try a deferred message again, decided in one place.
 *
 * The schedule is data from config: seconds to wait after the 1st, 2nd, …
 * failure; the last entry repeats. A message older than maxAge is not retried
 * (the caller bounces or expires it). Both the forwarder (Postfix-like: 5 min
 * doubling to 1 h, 5 days) and the engine's delivery (1, 5, 15, 30, 60 min,
 * hourly, 3 days) use this.
 */

export interface RetryPolicy {
  scheduleSeconds: readonly number[];
  maxAgeSeconds: number;
}

export type RetryDecision = { kind: 'retry'; at: number } | { kind: 'give-up'; reason: string };

/** `attempts` counts tries made so far (1 after the first failure). */
export function nextRetry(policy: RetryPolicy, attempts: number, enqueuedAt: number, now: number): RetryDecision {
  const ageMs = now - enqueuedAt;
  if (ageMs >= policy.maxAgeSeconds * 1000) {
    return { kind: 'give-up', reason: `in queue for ${Math.round(ageMs / 1000)} s, longer than the maximum of ${policy.maxAgeSeconds} s` };
  }
  const s = policy.scheduleSeconds;
  const delay = s[Math.min(Math.max(attempts, 1), s.length) - 1] ?? 0;
  return { kind: 'retry', at: now + delay * 1000 };
}
