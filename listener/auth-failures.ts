/*
 * auth-failures.ts — failed AUTH attempts per client IP in a fixed window
 * (Postfix's anvil does the same for smtpd_client_auth_rate_limit).
 *
 * Config: `listener.maxAuthFailures` (5) per `listener.authFailureWindowSeconds`
 * (300). Past the limit, AUTH is answered `454 4.7.0` without checking the
 * password, until the window that began with the first failure ends.
 * Memory is bounded: at most MAX_TRACKED addresses, the oldest forgotten first.
 *
 * Side effects: none.
 */

/** Enough for every forwarder of a large node; an attacker rotating addresses only evicts its own entries. */
const MAX_TRACKED = 10_000;

export class AuthFailures {
  private readonly byIp = new Map<string, { since: number; count: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  blocked(ip: string): boolean {
    const e = this.byIp.get(ip);
    if (!e) return false;
    if (this.now() - e.since >= this.windowMs) {
      this.byIp.delete(ip);
      return false;
    }
    return e.count >= this.max;
  }

  fail(ip: string): void {
    const now = this.now();
    const e = this.byIp.get(ip);
    if (e && now - e.since < this.windowMs) {
      e.count++;
      return;
    }
    this.byIp.delete(ip);
    this.byIp.set(ip, { since: now, count: 1 });
    if (this.byIp.size > MAX_TRACKED) this.byIp.delete(this.byIp.keys().next().value!);
  }
}
