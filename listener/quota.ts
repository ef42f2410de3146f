/*
 * quota.ts — messages per account per UTC hour and per UTC day.
 *
 * Config: `accounts[].listener.messagesPerHour` / `.messagesPerDay` (0 = no limit),
 * counted in messages, or in recipients with `.quotaUnit: "recipients"` (a message
 * to 1,000 recipients is 1,000 units; it is refused whole when it does not fit).
 * Over either, MAIL (and, for a race between sessions, the end of DATA) gets
 * `452 4.5.3`: temporary, so the forwarder keeps the message and retries.
 *
 * Durability: the counters live in the hosted LevelDB, and each message's
 * increment is written in the same synced batch that puts the message on the
 * intake queue. A restart therefore neither forgets accepted messages nor
 * counts refused ones. Keys: `lq!<account>!h!<YYYYMMDDHH>` and
 * `lq!<account>!d!<YYYYMMDD>` → decimal count. The windows are calendar
 * windows (UTC), not sliding: simple to explain on an invoice ("1,000 a day").
 * These counters (class Quotas) are per hosted node; with storage.postgres the
 * node counts in PostgreSQL instead (quota-postgres.ts: one count for every
 * node behind the balancer). Both implement QuotaCounter; the node picks one
 * at start (app/hosted.ts).
 *
 * Limits change while running with setLimits() (accounts API, config reload).
 *
 * Side effects: reads (and, when stale, deletes) `lq!` keys at open.
 */
import { PostinoError } from '../common/errors.js';
import type { BatchOp, Store } from '../common/store.js';

export interface QuotaLimits {
  id: string;
  perHour: number;
  perDay: number;
  /** What one unit is; default 'messages'. */
  unit?: 'messages' | 'recipients';
}

/** A counted message: ops for the intake batch, and `done` once the batch committed or failed. */
export interface QuotaReservation {
  ops: BatchOp[];
  done(committed: boolean): void;
}

/** What the listener asks of a quota counter, wherever it counts (see the header). */
export interface QuotaCounter {
  setLimits(limits: readonly QuotaLimits[]): Promise<void>;
  /** At MAIL: throws QUOTA_EXCEEDED when the account has no message left (as far as this node knows). */
  check(account: string): void;
  /** At the end of DATA: counts the message or throws QUOTA_EXCEEDED (the authoritative check). */
  reserve(account: string, recipients?: number): QuotaReservation | Promise<QuotaReservation>;
  usage(account: string): { hour: number; day: number } | undefined;
  close?(): Promise<void>;
}

/** The refusal for a full window; both counters word it the same. */
export function quotaExceeded(limits: QuotaLimits, window: 'hour' | 'day'): PostinoError {
  const what = limits.unit ?? 'messages';
  return window === 'hour'
    ? new PostinoError('QUOTA_EXCEEDED', `Hourly quota of ${limits.perHour} ${what} reached for account ${limits.id}, try again later`)
    : new PostinoError('QUOTA_EXCEEDED', `Daily quota of ${limits.perDay} ${what} reached for account ${limits.id}, try again later`);
}

/** Units one message of `recipients` recipients counts for. */
export function unitsOf(limits: QuotaLimits, recipients: number): number {
  return limits.unit === 'recipients' ? Math.max(1, recipients) : 1;
}

/** `YYYYMMDDHH` and `YYYYMMDD` of the UTC hour and day holding `t`, and when each ends. */
export function windowsAt(t: number): { hour: string; day: string; hourEnd: number; dayEnd: number } {
  const iso = new Date(t).toISOString();
  const hourStart = Math.floor(t / 3_600_000) * 3_600_000;
  const dayStart = Math.floor(t / 86_400_000) * 86_400_000;
  return { hour: iso.slice(0, 13).replace(/[-T]/g, ''), day: iso.slice(0, 10).replace(/-/g, ''), hourEnd: hourStart + 3_600_000, dayEnd: dayStart + 86_400_000 };
}

export const isLimited = (l: QuotaLimits): boolean => l.perHour > 0 || l.perDay > 0;

interface Window {
  key: string;
  /** Messages counted in this window: committed plus reserved in flight. */
  count: number;
}

interface Counter {
  limits: QuotaLimits;
  hour: Window;
  day: Window;
}

const PREFIX = 'lq!';

function hourKey(id: string, t: number): string {
  return `${PREFIX}${id}!h!${windowsAt(t).hour}`;
}
function dayKey(id: string, t: number): string {
  return `${PREFIX}${id}!d!${windowsAt(t).day}`;
}

/** Counters of the current windows for these limits, read from the store. */
async function readCounters(store: Store, limited: readonly QuotaLimits[], t: number): Promise<Map<string, Counter>> {
  const counters = new Map<string, Counter>();
  const keys = limited.flatMap((l) => [hourKey(l.id, t), dayKey(l.id, t)]);
  const values = keys.length ? store.getManyNow(keys) : []; // per message, hot counters: on this thread (store.ts)
  limited.forEach((l, i) => {
    const n = (v: Buffer | undefined): number => (v ? Number(v.toString('utf8')) || 0 : 0);
    counters.set(l.id, { limits: l, hour: { key: keys[2 * i]!, count: n(values[2 * i]) }, day: { key: keys[2 * i + 1]!, count: n(values[2 * i + 1]) } });
  });
  return counters;
}

export class Quotas implements QuotaCounter {
  private constructor(
    private readonly store: Store,
    private readonly counters: Map<string, Counter>,
    private readonly now: () => number,
  ) {}

  static async open(store: Store, limits: readonly QuotaLimits[], now: () => number = Date.now): Promise<Quotas> {
    const t = now();
    const counters = await readCounters(store, limits.filter(isLimited), t);
    // Windows that ended while we were down.
    const current = new Set([...counters.values()].flatMap((c) => [c.hour.key, c.day.key]));
    const stale: BatchOp[] = [];
    for await (const key of store.db.keys({ gte: PREFIX, lt: `${PREFIX}~` })) if (!current.has(key)) stale.push({ type: 'del', key });
    await store.commit(stale, { sync: false });
    return new Quotas(store, counters, now);
  }

  /**
   * New limits (accounts changed while running): an account still limited keeps its counts and
   * takes the new numbers at once; one newly limited starts from the counts its store keys hold
   * (a window counted only while it was limited); one no longer limited stops counting.
   */
  async setLimits(limits: readonly QuotaLimits[]): Promise<void> {
    const limited = limits.filter(isLimited);
    const fresh: QuotaLimits[] = [];
    for (const l of limited) {
      const c = this.counters.get(l.id);
      if (c) c.limits = l;
      else fresh.push(l);
    }
    const keep = new Set(limited.map((l) => l.id));
    for (const id of [...this.counters.keys()]) if (!keep.has(id)) this.counters.delete(id);
    if (fresh.length === 0) return;
    const read = await readCounters(this.store, fresh, this.now());
    // A later setLimits may have run meanwhile: only limits still wanted are added.
    for (const [id, c] of read) if (!this.counters.has(id) && keep.has(id)) this.counters.set(id, c);
  }

  /** Moves a counter to the current windows; the ended windows' keys are deleted with the next write. */
  private roll(c: Counter, t: number): BatchOp[] {
    const ops: BatchOp[] = [];
    const h = hourKey(c.limits.id, t);
    if (h !== c.hour.key) {
      ops.push({ type: 'del', key: c.hour.key });
      c.hour = { key: h, count: 0 };
    }
    const d = dayKey(c.limits.id, t);
    if (d !== c.day.key) {
      ops.push({ type: 'del', key: c.day.key });
      c.day = { key: d, count: 0 };
    }
    return ops;
  }

  /** Whether `units` more do not fit in the hour or the day. */
  private exceeded(c: Counter, units: number): PostinoError | undefined {
    const { perHour, perDay } = c.limits;
    if (perHour > 0 && c.hour.count + units > perHour) return quotaExceeded(c.limits, 'hour');
    if (perDay > 0 && c.day.count + units > perDay) return quotaExceeded(c.limits, 'day');
    return undefined;
  }

  /** Throws QUOTA_EXCEEDED when the account has no message left in this hour or day. */
  check(account: string): void {
    const c = this.counters.get(account);
    if (!c) return;
    this.roll(c, this.now());
    const e = this.exceeded(c, 1);
    if (e) throw e;
  }

  /**
   * Counts one message of `recipients` recipients (units: 1, or the recipients with
   * unit 'recipients'): returns the ops to commit with it and `done`, which gives
   * the units back when the commit failed. Throws QUOTA_EXCEEDED.
   */
  reserve(account: string, recipients = 1): QuotaReservation {
    const c = this.counters.get(account);
    if (!c) return { ops: [], done: () => undefined };
    const ops = this.roll(c, this.now());
    const units = unitsOf(c.limits, recipients);
    const e = this.exceeded(c, units);
    if (e) throw e;
    const hour = c.hour;
    const day = c.day;
    hour.count += units;
    day.count += units;
    ops.push({ type: 'put', key: hour.key, value: Buffer.from(String(hour.count)) });
    ops.push({ type: 'put', key: day.key, value: Buffer.from(String(day.count)) });
    return {
      ops,
      done(committed) {
        if (committed) return;
        // A later reservation may already have written a higher count: at worst we over-count by these units.
        hour.count -= units;
        day.count -= units;
      },
    };
  }

  /** Current counts (status, tests). */
  usage(account: string): { hour: number; day: number } | undefined {
    const c = this.counters.get(account);
    if (!c) return undefined;
    this.roll(c, this.now());
    return { hour: c.hour.count, day: c.day.count };
  }
}
