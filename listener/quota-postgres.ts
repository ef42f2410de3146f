/*
 * quota-postgres.ts — the account quotas (quota.ts) counted in PostgreSQL
 * (storage.postgres), so `messagesPerHour: 100` means 100 across every hosted
 * node behind the balancer, not 100 on each.
 *
 * One statement per message (postino_quota_reserve, migration 3): both windows
 * counted or neither, rows locked in one order so nodes never deadlock. The
 * check at MAIL uses the counts this node last saw (no round trip per MAIL);
 * the end of DATA is the authoritative check. A message whose intake batch
 * then fails gives its units back (one more statement, best effort: at worst
 * a failed message stays counted, the safe side of a limit).
 *
 * PostgreSQL down: mail is still accepted (the node's queue is local); the
 * units are counted in memory here and added to PostgreSQL when it answers
 * (every FLUSH_INTERVAL_MS). During an outage a limit is therefore kept per
 * node only, and a node killed meanwhile forgets what it had not written yet;
 * a quota is a commercial limit, and refusing every limited account's mail for
 * the length of a database outage would cost more than that overshoot.
 *
 * Ended windows' rows are deleted (by `expires`) at most once an hour.
 * Config: accounts[].listener.messagesPerHour/.messagesPerDay/.quotaUnit; storage.postgres.*.
 * Side effects: PostgreSQL statements; a timer.
 */
import { PostinoError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { sharedQuery, type PgPool } from '../common/storage/postgres/pool.js';
import { isLimited, quotaExceeded, unitsOf, windowsAt, type QuotaCounter, type QuotaLimits, type QuotaReservation } from './quota.js';

/** Counts kept while PostgreSQL was away are written this often: they reach the other nodes within this long of its return. */
const FLUSH_INTERVAL_MS = 2_000;
const SWEEP_INTERVAL_MS = 3_600_000;

interface Seen {
  hour: string;
  day: string;
  hourN: number;
  dayN: number;
}

interface Parked {
  account: string;
  hour: string;
  day: string;
  hourEnd: number;
  dayEnd: number;
  units: number;
}

export class PgQuotas implements QuotaCounter {
  private limits = new Map<string, QuotaLimits>();
  private readonly seen = new Map<string, Seen>();
  private parked: Parked[] = [];
  private readonly timer: NodeJS.Timeout;
  private lastSweep = 0;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly pool: PgPool,
    limits: readonly QuotaLimits[],
    private readonly now: () => number = Date.now,
    private readonly log?: Logger,
  ) {
    this.setLimitsNow(limits);
    this.timer = setInterval(() => void this.flush().catch(() => undefined), FLUSH_INTERVAL_MS).unref();
  }

  private setLimitsNow(limits: readonly QuotaLimits[]): void {
    this.limits = new Map(limits.filter(isLimited).map((l) => [l.id, l]));
    for (const id of [...this.seen.keys()]) if (!this.limits.has(id)) this.seen.delete(id);
  }

  async setLimits(limits: readonly QuotaLimits[]): Promise<void> {
    this.setLimitsNow(limits);
  }

  /** The counts this node last saw for the current windows, plus what it holds unwritten. */
  usage(account: string): { hour: number; day: number } | undefined {
    if (!this.limits.has(account)) return undefined;
    const w = windowsAt(this.now());
    const s = this.seen.get(account);
    const mine = this.parked.filter((p) => p.account === account);
    const hour = (s && s.hour === w.hour ? s.hourN : 0) + mine.filter((p) => p.hour === w.hour).reduce((n, p) => n + p.units, 0);
    const day = (s && s.day === w.day ? s.dayN : 0) + mine.filter((p) => p.day === w.day).reduce((n, p) => n + p.units, 0);
    return { hour, day };
  }

  check(account: string): void {
    const l = this.limits.get(account);
    const u = this.usage(account);
    if (!l || !u) return;
    if (l.perHour > 0 && u.hour + 1 > l.perHour) throw quotaExceeded(l, 'hour');
    if (l.perDay > 0 && u.day + 1 > l.perDay) throw quotaExceeded(l, 'day');
  }

  async reserve(account: string, recipients = 1): Promise<QuotaReservation> {
    const l = this.limits.get(account);
    if (!l) return { ops: [], done: () => undefined };
    const units = unitsOf(l, recipients);
    const t = this.now();
    const w = windowsAt(t);
    let row: { refused: string | null; hour_n: string; day_n: string } | undefined;
    try {
      await this.flush();
      const r = await sharedQuery<{ refused: string | null; hour_n: string; day_n: string }>(this.pool, 'counting a quota', 'SELECT * FROM postino_quota_reserve($1, $2, $3, $4, $5, $6, $7, $8)', [
        account,
        `h:${w.hour}`,
        `d:${w.day}`,
        units,
        l.perHour,
        l.perDay,
        new Date(w.hourEnd),
        new Date(w.dayEnd),
      ]);
      row = r.rows[0];
    } catch (err) {
      if (!(err instanceof PostinoError) || err.code !== 'SHARED_STATE_UNAVAILABLE') throw err;
      return this.reserveLocally(l, account, units, w);
    }
    if (!row) throw new PostinoError('SHARED_STATE_UNAVAILABLE', 'quota: no answer from postino_quota_reserve');
    this.seen.set(account, { hour: w.hour, day: w.day, hourN: Number(row.hour_n), dayN: Number(row.day_n) });
    if (row.refused === 'hour' || row.refused === 'day') throw quotaExceeded(l, row.refused);
    return {
      ops: [],
      done: (committed) => {
        if (committed) return;
        const s = this.seen.get(account);
        if (s && s.hour === w.hour) s.hourN -= units;
        if (s && s.day === w.day) s.dayN -= units;
        sharedQuery(this.pool, 'returning quota units', `UPDATE quota_counters SET n = greatest(0, n - $4) WHERE account = $1 AND win IN ($2, $3)`, [account, `h:${w.hour}`, `d:${w.day}`, units]).catch((err: unknown) =>
          this.log?.warn({ err, account }, 'quota units of a refused message not given back; it stays counted'),
        );
      },
    };
  }

  /** PostgreSQL away: this node's own view decides, and the units wait here (see the header). */
  private reserveLocally(l: QuotaLimits, account: string, units: number, w: ReturnType<typeof windowsAt>): QuotaReservation {
    const u = this.usage(account) ?? { hour: 0, day: 0 };
    if (l.perHour > 0 && u.hour + units > l.perHour) throw quotaExceeded(l, 'hour');
    if (l.perDay > 0 && u.day + units > l.perDay) throw quotaExceeded(l, 'day');
    const p: Parked = { account, hour: w.hour, day: w.day, hourEnd: w.hourEnd, dayEnd: w.dayEnd, units };
    this.parked.push(p);
    this.log?.warn({ event: 'quota-counted-locally', account, units }, 'PostgreSQL unavailable: quota counted on this node until it returns');
    return {
      ops: [],
      done: (committed) => {
        if (!committed) this.parked = this.parked.filter((x) => x !== p);
      },
    };
  }

  /** Writes the units counted while PostgreSQL was away (unconditionally: those messages are accepted), and sweeps ended windows. */
  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const sweep = this.now() - this.lastSweep >= SWEEP_INTERVAL_MS;
    if (this.parked.length === 0 && !sweep) return;
    this.flushing = (async () => {
      while (this.parked.length > 0) {
        const p = this.parked[0]!;
        await sharedQuery(
          this.pool,
          'writing quota counts',
          `INSERT INTO quota_counters VALUES ($1, $2, $4, $5), ($1, $3, $4, $6) ON CONFLICT (account, win) DO UPDATE SET n = quota_counters.n + EXCLUDED.n`,
          [p.account, `h:${p.hour}`, `d:${p.day}`, p.units, new Date(p.hourEnd), new Date(p.dayEnd)],
        );
        this.parked = this.parked.filter((x) => x !== p);
      }
      if (sweep) {
        await sharedQuery(this.pool, 'sweeping quota windows', 'DELETE FROM quota_counters WHERE expires < now()');
        this.lastSweep = this.now();
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(() => undefined);
  }
}
