/*
 * reputation-brake.ts — pauses an account whose mail draws complaints, hard
 * bounces or blocks above the mailbox providers' limits, before they block
 * the shared sending IPs.
 *
 * Evaluated each time statistics fold (stats.ts, about once a second), for
 * the accounts the fold touched, on the account's hourly counters over the
 * last events.brake.windowHours, for the whole account and for each stream
 * (transactional, bulk) apart, so a bulk campaign that draws complaints is
 * caught even when plenty of clean transactional mail dilutes the overall rate:
 *   complaint rate   complained / delivered
 *   hard-bounce rate hardBounced / (delivered + bounced)
 *   block rate       blockBounced / (delivered + bounced)
 * with at least events.brake.minMessages outcomes (delivered + bounced) in the
 * window. A rate at `warn` is logged once per crossing; at `pause` the
 * account's delivery kill-switch is engaged (DeliveryPause: its mail waits,
 * intake goes on), a `paused` event records the figures (the notifier mails
 * it to accounts[].engine.notify.addresses) and `brake!<account>` the reason,
 * shown by `postino hosted status`.
 *
 * Resuming is the kill-switch's resume (`postino hosted resume --account X`,
 * POST /api/resume): the brake writes a `resumed` event, and from then on
 * counts only what happens after the resume: it keeps the hourly counters of
 * the moment of the resume as a baseline and subtracts them (per hour, so the
 * baseline slides out of the window with its hours). Without that, the
 * complaints that caused the pause would pause the account again at once.
 *
 * Keys: brake!<account> → {state: 'paused'|'resumed', at, reason?, figures?, baseline?}.
 * Config: events.brake.*. Side effects: LevelDB writes; the kill-switch.
 */
import { STREAMS, type EventsConfig, type Stream } from '../../common/config.js';
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';
import type { Counts, Stats } from './stats.js';

type BrakeConfig = EventsConfig['brake'];
type Figures = NonNullable<PostinoEvent['figures']>;
const HOUR_MS = 3_600_000;

/** The kill-switch as the brake needs it (engine/delivery/delivery-pause.ts). */
export interface AccountSwitch {
  isPaused(account: string): boolean;
  pause(account: string): Promise<unknown>;
  onChange(fn: () => void): void;
}

export interface BrakeRecord {
  state: 'paused' | 'resumed';
  at: string;
  reason?: string | undefined;
  figures?: Figures | undefined;
  /** resumed: the hourly counters at the moment of the resume, per scope ('all' or a stream) and hour bucket. */
  baseline?: Record<string, Record<string, Counts>> | undefined;
}

function key(account: string): string {
  return `brake!${account}`;
}

export class ReputationBrake {
  private readonly records = new Map<string, BrakeRecord>();
  private readonly warned = new Set<string>();
  private evaluating: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: { store: Store; events: EventLog; stats: Stats; killSwitch: AccountSwitch; config: BrakeConfig; log: Logger; now?: () => number },
  ) {}

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  async start(): Promise<void> {
    for await (const [k, v] of this.o.store.db.iterator({ gte: 'brake!', lt: 'brake~' })) this.records.set(k.slice(6), JSON.parse(v.toString('utf8')) as BrakeRecord);
    // A pause recorded but not yet engaged when the process died: engage it now.
    for (const [account, r] of this.records) if (r.state === 'paused' && !this.o.killSwitch.isPaused(account)) await this.o.killSwitch.pause(account);
    if (!this.o.config.enabled) return;
    this.o.stats.onFold((added) => {
      const accounts = new Set([...added.keys()].map((k) => k.slice(0, k.indexOf('!'))));
      this.evaluating = this.evaluating.then(() => this.evaluate(accounts)).catch((err: unknown) => this.o.log.error({ err }, 'reputation brake evaluation failed'));
    });
    this.o.killSwitch.onChange(() => {
      this.evaluating = this.evaluating.then(() => this.noticeResumes()).catch((err: unknown) => this.o.log.error({ err }, 'reputation brake resume failed'));
    });
  }

  /** What `postino hosted status` shows: accounts the brake paused and why. */
  state(): Array<{ account: string } & BrakeRecord> {
    return [...this.records].filter(([, r]) => r.state === 'paused').map(([account, r]) => ({ account, at: r.at, state: r.state, reason: r.reason, figures: r.figures }));
  }

  /** The hourly rows of the window, of the whole account or one stream. */
  private hours(account: string, stream: Stream | undefined, fold = true): ReturnType<Stats['query']> {
    const to = this.now();
    return this.o.stats.query({ groupBy: 'hour', account, stream, from: to - (this.o.config.windowHours - 1) * HOUR_MS, to, fold });
  }

  /** The account's (or one stream's) hourly counters over the window, minus the baseline of a resume. */
  private async window(account: string, stream: Stream | undefined, fold: boolean): Promise<Counts> {
    const r = await this.hours(account, stream, fold);
    const base = this.records.get(account)?.baseline?.[stream ?? 'all'] ?? {};
    const sum: Counts = {};
    for (const row of r.rows) {
      for (const m of ['delivered', 'bounced', 'complained', 'hardBounced', 'blockBounced'] as const) sum[m] = (sum[m] ?? 0) + row[m] - (base[row.key]?.[m] ?? 0);
    }
    return sum;
  }

  /**
   * The account's (or one stream's) rates over the window as the brake judges them (after a
   * resume, only what came since): the dashboard's overview shows them beside the limits.
   */
  async figures(account: string, stream?: Stream, fold = true): Promise<Figures> {
    const w = await this.window(account, stream, fold);
    const delivered = w.delivered ?? 0;
    const outcomes = delivered + (w.bounced ?? 0);
    return {
      ...(stream ? { stream } : {}),
      window: `${this.o.config.windowHours}h`,
      sent: outcomes,
      complaintRate: delivered ? (w.complained ?? 0) / delivered : 0,
      hardBounceRate: outcomes ? (w.hardBounced ?? 0) / outcomes : 0,
      blockRate: outcomes ? (w.blockBounced ?? 0) / outcomes : 0,
    };
  }

  /** The limits it judges by (events.brake). */
  get config(): BrakeConfig {
    return this.o.config;
  }

  private async evaluate(accounts: Set<string>): Promise<void> {
    for (const account of accounts) {
      for (const stream of [undefined, ...STREAMS]) {
        if (!account || this.records.get(account)?.state === 'paused') continue;
        await this.evaluateScope(account, stream);
      }
    }
  }

  /** One account, as a whole or one stream: a bulk campaign drawing complaints pauses the account even when its transactional mail dilutes the overall rate. */
  private async evaluateScope(account: string, stream: Stream | undefined): Promise<void> {
    const c = this.o.config;
    const scope = `${account}/${stream ?? 'all'}`;
    // Called from the fold's listener: the counters are that fold's, no fold again (stats.ts StatsQuery.fold).
    const figures = await this.figures(account, stream, false);
    const outcomes = figures.sent;
    if (outcomes < c.minMessages) return;
    const over = (level: 'warn' | 'pause'): string[] =>
      [
        figures.complaintRate >= c.complaintRate[level] && `complaint rate ${pct(figures.complaintRate)} ≥ ${pct(c.complaintRate[level])}`,
        figures.hardBounceRate >= c.hardBounceRate[level] && `hard-bounce rate ${pct(figures.hardBounceRate)} ≥ ${pct(c.hardBounceRate[level])}`,
        figures.blockRate >= c.blockRate[level] && `block rate ${pct(figures.blockRate)} ≥ ${pct(c.blockRate[level])}`,
      ].filter((s): s is string => !!s);
    const pause = over('pause');
    if (pause.length) {
      await this.pause(account, `reputation brake${stream ? ` (${stream} stream)` : ''}: ${pause.join(', ')} over the last ${c.windowHours}h (${outcomes} messages)`, figures);
      return;
    }
    const warn = over('warn');
    if (warn.length && !this.warned.has(scope)) this.o.log.warn({ event: 'reputation-warning', account, stream, figures, over: warn }, 'account near the reputation brake');
    if (warn.length) this.warned.add(scope);
    else this.warned.delete(scope);
  }

  private async pause(account: string, reason: string, figures: Figures): Promise<void> {
    const rec: BrakeRecord = { state: 'paused', at: new Date(this.now()).toISOString(), reason, figures };
    // The record (with its event) first: if we die before the switch is engaged, start() engages it.
    await this.o.events.commitWith([{ type: 'paused', account, reason, figures }], (ops) => this.o.store.commit([...ops, { type: 'put', key: key(account), value: Buffer.from(JSON.stringify(rec)) }], { sync: true }));
    this.records.set(account, rec);
    await this.o.killSwitch.pause(account);
    this.o.log.warn({ event: 'reputation-pause', account, figures, reason }, 'account paused by the reputation brake');
  }

  /** A brake-paused account whose kill-switch is off again was resumed by an operator. */
  private async noticeResumes(): Promise<void> {
    for (const [account, r] of this.records) {
      if (r.state !== 'paused' || this.o.killSwitch.isPaused(account)) continue;
      const to = this.now();
      const baseline: Record<string, Record<string, Counts>> = {};
      for (const stream of [undefined, ...STREAMS]) {
        const b: Record<string, Counts> = (baseline[stream ?? 'all'] = {});
        for (const { key: hour, ...counts } of (await this.hours(account, stream)).rows) b[hour] = counts;
      }
      const rec: BrakeRecord = { state: 'resumed', at: new Date(to).toISOString(), baseline };
      const reason = `resumed by an operator after: ${r.reason ?? 'a reputation pause'}`;
      await this.o.events.commitWith([{ type: 'resumed', account, reason, figures: r.figures }], (ops) => this.o.store.commit([...ops, { type: 'put', key: key(account), value: Buffer.from(JSON.stringify(rec)) }], { sync: true }));
      this.records.set(account, rec);
      for (const w of [...this.warned]) if (w.startsWith(`${account}/`)) this.warned.delete(w);
      this.o.log.info({ event: 'reputation-resume', account }, 'account resumed after a reputation pause');
    }
  }
}

function pct(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}
