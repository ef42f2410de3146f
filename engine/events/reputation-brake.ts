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
 * Several nodes (storage.postgres): every node's brake judges the same
 * installation-wide statistics (stats-postgres.ts tells every node which
 * accounts any fold touched), so the records are shared too
 * (brake-records-postgres.ts): before judging, a node reads the accounts'
 * records from PostgreSQL, so it subtracts the resume baseline whichever node
 * wrote it, and a pause or resume is a claim on the record (compare-and-set
 * on the record it judged): of several nodes reaching the same decision one
 * wins, writes the one `paused` (or `resumed`) event in its log (one notice to
 * the customer) and engages the shared kill-switch; the others re-read the
 * record. A resume through any node is claimed by whichever node sees the
 * switch off first (only while the switch's row is really gone), with the
 * baseline of that moment. Every RETRY_MS each node re-reads all records, so
 * its status shows every brake pause with its figures, a node that was down
 * during a pause and its resume judges by the baseline at once, and a claim
 * left unfinished by a crash is settled (brake-records-postgres.ts).
 * PostgreSQL down: the statistics fail (503), so nothing is judged; a record
 * that cannot be read or claimed is logged and tried again at the next beat;
 * nothing is paused twice.
 *
 * `engaged` marks a record whose switch was turned on: a paused record not
 * engaged yet (the process died between the two, or PostgreSQL did not
 * answer) is engaged at start and retried every RETRY_MS (by any node), never
 * read as a resume; an engaged one whose switch is off was resumed, also
 * while this node was down.
 *
 * Keys (single node): brake!<account> → {state: 'paused'|'resumed', at, reason?, figures?, baseline?, engaged?, claim?}.
 * Config: events.brake.*. Side effects: LevelDB or PostgreSQL writes; the kill-switch.
 */
import { randomUUID } from 'node:crypto';
import { STREAMS, type EventsConfig, type Stream } from '../../common/config.js';
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import { LevelBrakeRecords, type BrakeRecord, type BrakeRecords } from './brake-records.js';
import type { EventLog } from './event-log.js';
import type { Counts, StatsCounters } from './stats.js';

export type { BrakeRecord } from './brake-records.js';

type BrakeConfig = EventsConfig['brake'];
type Figures = NonNullable<PostinoEvent['figures']>;
const HOUR_MS = 3_600_000;
/**
 * The brake's beat: a pause whose switch could not be turned on yet (PostgreSQL down) is tried
 * again, an account whose judgement failed is judged again and, with shared records, the records
 * are re-read (another node's pause or resume; a claim of this node left unfinished).
 */
const RETRY_MS = 2_000;

/** The kill-switch as the brake needs it (engine/delivery/delivery-pause.ts). */
export interface AccountSwitch {
  isPaused(account: string): boolean;
  pause(account: string, why?: { reason?: string | undefined; by?: string | undefined }): Promise<unknown>;
  onChange(fn: () => void): void;
  /** Who turned each account's switch on (DeliveryPause.details): another node's brake pauses are listed too. */
  details?(): { accounts: Record<string, { at: string; reason?: string | undefined; by?: string | undefined }> };
}

/** The `by` of the pauses the brake engages: how another node's brake pause is told from an operator's. */
export const BRAKE_BY = 'reputation brake';

export class ReputationBrake {
  /** The records as last read (a single node: the records themselves; several: refreshed before each judgement). */
  private readonly records = new Map<string, BrakeRecord>();
  private readonly recs: BrakeRecords;
  private readonly warned = new Set<string>();
  /** Paused by the brake, the switch not turned on yet (retried; not a resume). */
  private readonly engaging = new Set<string>();
  /** Accounts whose judgement failed (PostgreSQL did not answer): judged again at the next beat. */
  private readonly unjudged = new Set<string>();
  private failing = false;
  private evaluating: Promise<void> = Promise.resolve();
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: {
      store: Store;
      events: EventLog;
      stats: StatsCounters;
      killSwitch: AccountSwitch;
      config: BrakeConfig;
      log: Logger;
      now?: () => number;
      /** Where the records are kept (app/shared-state.ts); absent: this node's LevelDB. */
      records?: BrakeRecords | undefined;
    },
  ) {
    this.recs = o.records ?? new LevelBrakeRecords(o.store, o.events);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /** Runs after what is under way: one judgement, claim or engagement at a time on this node. */
  private enqueue(what: string, fn: () => Promise<void>): void {
    this.evaluating = this.evaluating.then(fn).catch((err: unknown) => this.o.log.error({ err }, `reputation brake ${what} failed`));
  }

  async start(): Promise<void> {
    await this.refresh().catch((err: unknown) => this.unavailable(err, 'records not read; tried again'));
    await this.engagePending();
    this.retry = setInterval(() => this.enqueue('beat', () => this.beat()), RETRY_MS).unref();
    if (!this.o.config.enabled) return;
    this.o.stats.onFold((touched) => this.enqueue('evaluation', () => this.evaluate(touched)));
    this.o.killSwitch.onChange(() => this.enqueue('resume', () => this.noticeResumes()));
    // Resumed (through another node) while this one was down.
    this.enqueue('resume', () => this.noticeResumes());
  }

  /** Stops the beat; waits for an evaluation under way. */
  async stop(): Promise<void> {
    clearInterval(this.retry);
    await this.evaluating;
  }

  private unavailable(err: unknown, what: string): void {
    if (!this.failing) this.o.log.warn({ event: 'reputation-brake-unavailable', err: { message: (err as Error).message } }, `reputation brake: ${what}`);
    this.failing = true;
  }

  /** Every record as it is now; a paused one whose switch is not on yet is engaged (by whichever node gets there). */
  private async refresh(): Promise<void> {
    const all = await this.recs.load();
    this.records.clear();
    for (const [account, r] of all) this.records.set(account, r);
    // A pause recorded but not engaged (this or another node died between the two, or PostgreSQL did not answer).
    for (const [account, r] of this.records) if (r.state === 'paused' && !r.engaged) this.engaging.add(account);
    this.failing = false;
  }

  private async beat(): Promise<void> {
    if (this.recs.shared) {
      try {
        await this.refresh();
      } catch (err) {
        this.unavailable(err, 'records not read; tried again');
        return;
      }
    }
    await this.engagePending();
    if (!this.o.config.enabled) return;
    if (this.unjudged.size) await this.evaluate(new Set(this.unjudged));
    await this.noticeResumes();
  }

  /** Turns on the switch of every brake pause not engaged yet; one that fails stays pending (PostgreSQL down: 503). */
  private async engagePending(): Promise<void> {
    for (const account of [...this.engaging]) {
      const r = this.records.get(account);
      if (r?.state !== 'paused' || r.engaged) {
        this.engaging.delete(account);
        continue;
      }
      try {
        // Already on (engaged by another node whose mark is still to come): only the mark.
        if (!this.o.killSwitch.isPaused(account)) await this.o.killSwitch.pause(account, { reason: r.reason, by: BRAKE_BY });
        await this.recs.markEngaged(account, r);
      } catch (err) {
        this.o.log.warn({ event: 'reputation-pause-pending', account, err: { message: (err as Error).message } }, 'the reputation brake could not engage the pause yet; retried');
        continue;
      }
      this.records.set(account, { ...r, engaged: true });
      this.engaging.delete(account);
    }
  }

  /**
   * What `postino hosted status` shows: accounts the brake paused and why (the same on every node
   * with shared records); also a brake pause on the shared switch with no record here (reason, no figures).
   */
  state(): Array<{ account: string } & BrakeRecord> {
    const out: Array<{ account: string } & BrakeRecord> = [...this.records].filter(([, r]) => r.state === 'paused').map(([account, r]) => ({ account, at: r.at, state: r.state, reason: r.reason, figures: r.figures }));
    const mine = new Set(out.map((s) => s.account));
    for (const [account, d] of Object.entries(this.o.killSwitch.details?.().accounts ?? {})) {
      if (d.by === BRAKE_BY && !mine.has(account)) out.push({ account, at: d.at, state: 'paused', reason: d.reason });
    }
    return out;
  }

  /** The hourly rows of the window, of the whole account or one stream. */
  private hours(account: string, stream: Stream | undefined, fold = true): ReturnType<StatsCounters['query']> {
    const to = this.now();
    return this.o.stats.query({ groupBy: 'hour', account, stream, from: to - (this.o.config.windowHours - 1) * HOUR_MS, to, fold });
  }

  /** The account's (or one stream's) hourly counters over the window, minus the baseline of a resume. */
  private async window(account: string, stream: Stream | undefined, fold: boolean): Promise<Counts> {
    const r = await this.hours(account, stream, fold);
    const base = this.records.get(account)?.baseline?.[stream ?? 'all'] ?? {};
    const sum: Counts = {};
    for (const row of r.rows) {
      // Never below 0: a baseline adopted from a node's LevelDB may exceed the shared counters of its hour.
      for (const m of ['delivered', 'bounced', 'complained', 'hardBounced', 'blockBounced'] as const) sum[m] = (sum[m] ?? 0) + Math.max(0, row[m] - (base[row.key]?.[m] ?? 0));
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

  /** Judges the accounts on their records as they are now (another node may have paused or resumed them). */
  private async evaluate(touched: ReadonlySet<string>): Promise<void> {
    const accounts = [...new Set([...touched, ...this.unjudged])].filter(Boolean);
    this.unjudged.clear();
    let now: Map<string, BrakeRecord>;
    try {
      now = await this.recs.get(accounts);
    } catch (err) {
      for (const a of accounts) this.unjudged.add(a);
      this.unavailable(err, 'records not read; the accounts are judged again');
      return;
    }
    for (const a of accounts) {
      const r = now.get(a);
      if (r) this.records.set(a, r);
      else this.records.delete(a);
    }
    for (const account of accounts) {
      try {
        for (const stream of [undefined, ...STREAMS]) {
          if (this.records.get(account)?.state === 'paused') break;
          await this.evaluateScope(account, stream);
        }
      } catch (err) {
        this.unjudged.add(account);
        this.unavailable(err, 'an account not judged; judged again');
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
    const prev = this.records.get(account);
    const rec: BrakeRecord = { state: 'paused', at: new Date(this.now()).toISOString(), reason, figures, claim: randomUUID() };
    // The record (with its event) first: if we die before the switch is engaged, the next start (any node's beat) engages it.
    if (!(await this.recs.claimPause(account, rec, prev, { type: 'paused', account, reason, figures }))) {
      // Another node decided first (or resumed meanwhile): its record is the one to go by.
      const now = (await this.recs.get([account])).get(account);
      if (now) this.records.set(account, now);
      this.o.log.info({ event: 'reputation-pause-elsewhere', account, state: now?.state }, 'another node of the reputation brake decided first');
      if (now?.state === 'paused' && !now.engaged) this.engaging.add(account);
      return;
    }
    this.records.set(account, rec);
    this.engaging.add(account);
    await this.engagePending();
    this.o.log.warn({ event: 'reputation-pause', account, figures, reason }, 'account paused by the reputation brake');
  }

  /** A brake-paused account whose kill-switch is off again was resumed by an operator: one node claims it and writes `resumed`. */
  private async noticeResumes(): Promise<void> {
    for (const [account, r] of [...this.records]) {
      if (r.state !== 'paused' || !r.engaged || this.engaging.has(account) || this.o.killSwitch.isPaused(account)) continue;
      const to = this.now();
      const baseline: Record<string, Record<string, Counts>> = {};
      for (const stream of [undefined, ...STREAMS]) {
        const b: Record<string, Counts> = (baseline[stream ?? 'all'] = {});
        for (const { key: hour, ...counts } of (await this.hours(account, stream)).rows) b[hour] = counts;
      }
      const rec: BrakeRecord = { state: 'resumed', at: new Date(to).toISOString(), baseline, claim: randomUUID() };
      const reason = `resumed by an operator after: ${r.reason ?? 'a reputation pause'}`;
      if (!(await this.recs.claimResume(account, rec, r, { type: 'resumed', account, reason, figures: r.figures }))) {
        // Another node wrote the resume, or the switch is on again (this node's copy of it lagged).
        const now = (await this.recs.get([account])).get(account);
        if (now) this.records.set(account, now);
        continue;
      }
      this.records.set(account, rec);
      for (const w of [...this.warned]) if (w.startsWith(`${account}/`)) this.warned.delete(w);
      this.o.log.info({ event: 'reputation-resume', account }, 'account resumed after a reputation pause');
    }
  }
}

function pct(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}
