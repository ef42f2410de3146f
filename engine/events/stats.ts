/*
 * stats.ts — delivery statistics per day and per hour, per account, tag,
 * sender, recipient domain and stream (DESIGN.md, "What comes back"),
 * maintained incrementally: no query ever scans the events.
 *
 * Why deltas and a fold: many writers commit events concurrently (rewrap,
 * delivery, feedback), each in its own batch, and a counter that each of them
 * read, incremented and wrote back would lose increments between two batches
 * in flight. So `prepare()` (EventLog indexer) adds one *delta* record per
 * batch, keyed by the batch's first seq, written in that same batch:
 *   sx!<seq16> → {"<counter key>": {"<metric>": n}}
 * and one folder (serialised in this process) adds committed deltas into the
 * counters and deletes them, in one batch:
 *   st!<account>!<h|d>!<all|tag|sender|domain|stream>!<bucket>!<value> → {"<metric>": n}
 *   sa!<account> → '' (accounts that have statistics, for node-wide queries)
 * `bucket` is the UTC hour (2026-11-30T10) or day (2026-11-30); hours are kept
 * for the whole-account row (`all`) and per stream, the other dimensions per day. A delta at or
 * below the event log's watermark is committed (its batch settled); a crash
 * leaves deltas in place for the next fold, and a lost unsynced batch loses its
 * deltas together with its events, so counters and feed never disagree.
 * Queries fold first, then read the counter keys of their range.
 *
 * Metrics: see METRICS. Opens and clicks by machines (privacy-proxy
 * prefetch, link scanners) are counted apart from people's; `uniqueOpened` is
 * a person's open that was the first open of its copy, `uniqueClicked` a
 * person's first click in a copy.
 *
 * Personal data: the `sender` dimension holds sender addresses (and `tag` what
 * the customer puts there), in `st!` keys; recipients appear only as domains.
 * Config: events.statsRetentionDays (retention.ts). Side effects: LevelDB reads and writes.
 */
import { domainOf } from '../../common/address.js';
import { NOTIFY_TAG, type PostinoEvent } from '../../common/events.js';
import { PostinoError } from '../../common/errors.js';
import type { Stream } from '../../common/config.js';
import type { BatchOp, Store } from '../../common/store.js';
import type { EventLog } from './event-log.js';

export const METRICS = [
  'accepted',
  'scheduled',
  'delivered',
  'deferred',
  'bounced',
  'hardBounced',
  'softBounced',
  'blockBounced',
  'complained',
  'unsubscribed',
  'opened',
  'uniqueOpened',
  'machineOpened',
  'clicked',
  'uniqueClicked',
  'machineClicked',
  'suppressed',
  'rejected',
  'expired',
  'failed',
] as const;
export type Metric = (typeof METRICS)[number];
export type Counts = Partial<Record<Metric, number>>;

export const GROUP_BY = ['day', 'hour', 'tag', 'sender', 'domain', 'stream', 'account'] as const;
export type GroupBy = (typeof GROUP_BY)[number];
export type Dimension = 'all' | 'tag' | 'sender' | 'domain' | 'stream';

const SEQ_WIDTH = 16;
/** Deltas folded per batch: bounded work (and memory) per fold step while writes go on. */
const FOLD_BATCH = 2_000;
/** Dimension values longer than this are cut (a key is not a place for a novel). */
const MAX_VALUE_CHARS = 200;
const DAY_MS = 86_400_000;
const DEFAULT_RANGE_DAYS = 30;

/** The metrics one event adds one to. */
export function metricsOf(e: PostinoEvent): Metric[] {
  if (e.tag === NOTIFY_TAG) return [];
  switch (e.type) {
    case 'bounced':
      return ['bounced', e.bounce?.class === 'hard' ? 'hardBounced' : e.bounce?.class === 'block' ? 'blockBounced' : 'softBounced'];
    case 'opened':
      return e.machine ? ['machineOpened'] : e.first ? ['opened', 'uniqueOpened'] : ['opened'];
    case 'clicked':
      return e.machine ? ['machineClicked'] : e.first ? ['clicked', 'uniqueClicked'] : ['clicked'];
    case 'accepted':
    case 'scheduled':
    case 'delivered':
    case 'deferred':
    case 'complained':
    case 'unsubscribed':
    case 'suppressed':
    case 'rejected':
    case 'expired':
    case 'failed':
      return [e.type];
    default:
      return [];
  }
}

function hourOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 13);
}
function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function cut(v: string): string {
  return v.length > MAX_VALUE_CHARS ? v.slice(0, MAX_VALUE_CHARS) : v;
}

/**
 * One counter an event counts under: the account, hourly or daily, the
 * dimension, the UTC bucket and the dimension's value ('' for `all`).
 * LevelDB keys it as `st!<account>!<gran>!<dim>!<bucket>!<value>`, PostgreSQL
 * as the primary key of stats_counters (stats-postgres.ts).
 */
export interface CounterCell {
  account: string;
  gran: 'h' | 'd';
  dim: Dimension;
  bucket: string;
  value: string;
}

/** The counters one event counts under. */
export function counterCells(e: PostinoEvent): CounterCell[] {
  const parsed = Date.parse(e.at);
  // A writer's malformed `at` must not make prepare() throw on the mail path: count it now.
  const at = Number.isNaN(parsed) ? Date.now() : parsed;
  const day = dayOf(at);
  const hour = hourOf(at);
  const account = e.account;
  const out: CounterCell[] = [
    { account, gran: 'h', dim: 'all', bucket: hour, value: '' },
    { account, gran: 'd', dim: 'all', bucket: day, value: '' },
  ];
  if (e.tag) out.push({ account, gran: 'd', dim: 'tag', bucket: day, value: cut(e.tag) });
  if (e.sender) out.push({ account, gran: 'd', dim: 'sender', bucket: day, value: cut(e.sender.toLowerCase()) });
  if (e.recipient) out.push({ account, gran: 'd', dim: 'domain', bucket: day, value: cut(domainOf(e.recipient).toLowerCase()) });
  if (e.stream) out.push({ account, gran: 'h', dim: 'stream', bucket: hour, value: e.stream }, { account, gran: 'd', dim: 'stream', bucket: day, value: e.stream });
  return out;
}

/** The counter keys (without `st!`) one event counts under. */
function counterKeys(e: PostinoEvent): string[] {
  return counterCells(e).map((c) => `${c.account}!${c.gran}!${c.dim}!${c.bucket}!${c.value}`);
}

export function add(into: Counts, from: Counts): void {
  for (const [m, n] of Object.entries(from) as Array<[Metric, number]>) into[m] = (into[m] ?? 0) + n;
}

export interface StatsQuery {
  from?: number | undefined;
  to?: number | undefined;
  groupBy: GroupBy;
  /** undefined = every account (node key). */
  account: string | undefined;
  /** Only this stream's counts (with groupBy day, hour or account). */
  stream?: Stream | undefined;
  /**
   * false: read the counters as the last fold left them, without folding first. For a
   * fold's own listener (the reputation brake), which runs right after a fold: folding
   * again there started the next fold from each one, a loop that under load folded and
   * queried about once per message instead of once a second (issue #17).
   */
  fold?: boolean | undefined;
}

export interface StatsRow extends Record<Metric, number> {
  key: string;
}

export interface StatsResult {
  from: string;
  to: string;
  groupBy: GroupBy;
  account: string | null;
  stream: Stream | null;
  rows: StatsRow[];
  total: Record<Metric, number>;
}

/** A row with every metric present (0 where nothing was counted). */
export function fullRow(key: string, c: Counts): StatsRow {
  const row = { key } as StatsRow;
  for (const m of METRICS) row[m] = c[m] ?? 0;
  return row;
}

/** What a query reads: its range, and which counters (granularity, dimension, buckets lo..hi). */
export interface QueryPlan {
  from: number;
  to: number;
  gran: 'h' | 'd';
  dim: Dimension;
  lo: string;
  hi: string;
}

/** Checks a query and says which counters answer it (the same on both backends). */
export function planQuery(q: StatsQuery, now: number): QueryPlan {
  const to = q.to ?? now;
  const from = q.from ?? to - DEFAULT_RANGE_DAYS * DAY_MS;
  if (to < from) throw new PostinoError('BAD_REQUEST', 'to is before from');
  const hourly = q.groupBy === 'hour';
  let dim: Dimension = q.groupBy === 'tag' || q.groupBy === 'sender' || q.groupBy === 'domain' || q.groupBy === 'stream' ? q.groupBy : 'all';
  if (q.stream !== undefined) {
    if (dim !== 'all') throw new PostinoError('BAD_REQUEST', 'stream= goes with groupBy=day, hour or account');
    dim = 'stream';
  }
  // Buckets are whole hours or days: the range covers every bucket that `from`..`to` touches.
  return { from, to, gran: hourly ? 'h' : 'd', dim, lo: hourly ? hourOf(from) : dayOf(from), hi: hourly ? hourOf(to) : dayOf(to) };
}

/** Adds one counter the plan read into the row it belongs to (a counter of another stream is left out). */
export function addToGroup(groups: Map<string, Counts>, q: StatsQuery, plan: QueryPlan, account: string, bucket: string, value: string, counts: Counts): void {
  if (q.stream !== undefined && value !== q.stream) return;
  const group = q.groupBy === 'account' ? account : plan.dim === 'all' || q.stream !== undefined ? bucket : value;
  const into = groups.get(group) ?? {};
  add(into, counts);
  groups.set(group, into);
}

/** The answer: rows in key order, every metric present, and their total. */
export function resultOf(q: StatsQuery, plan: QueryPlan, groups: Map<string, Counts>): StatsResult {
  const total: Counts = {};
  for (const c of groups.values()) add(total, c);
  const rows = [...groups].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, c]) => fullRow(k, c));
  const { key: _k, ...t } = fullRow('', total);
  return { from: new Date(plan.from).toISOString(), to: new Date(plan.to).toISOString(), groupBy: q.groupBy, account: q.account ?? null, stream: q.stream ?? null, rows, total: t };
}

/**
 * The statistics as their readers use them (API, dashboard, reputation brake,
 * retention): this node's LevelDB counters (Stats, below) or, with
 * storage.postgres, the installation's (stats-postgres.ts).
 */
export interface StatsCounters {
  query(q: StatsQuery): Promise<StatsResult>;
  /** Brings the counters up to date with what is committed (the readers call it about once a second). */
  fold(): Promise<void>;
  /** Called after counters changed, with the accounts whose counters did (the reputation brake listens). */
  onFold(fn: (accounts: ReadonlySet<string>) => void): void;
  /** Deletes counters of buckets before `cutoff` (epoch ms), at most `max`; returns how many. */
  prune(cutoff: number, max: number): Promise<number>;
}

export class Stats implements StatsCounters {
  private folding: Promise<void> = Promise.resolve();
  /** Called after each fold step with the accounts it touched (the reputation brake listens). */
  private readonly listeners: Array<(accounts: ReadonlySet<string>) => void> = [];

  constructor(
    private readonly store: Store,
    private readonly events: EventLog,
    private readonly now: () => number = Date.now,
  ) {}

  /** The EventLog indexer: one delta record per prepared batch. */
  readonly indexer = (events: PostinoEvent[]): BatchOp[] => {
    const delta: Record<string, Counts> = {};
    for (const e of events) {
      const ms = metricsOf(e);
      if (!ms.length) continue;
      for (const k of counterKeys(e)) {
        const c = (delta[k] ??= {});
        for (const m of ms) c[m] = (c[m] ?? 0) + 1;
      }
    }
    if (!Object.keys(delta).length) return [];
    return [{ type: 'put', key: `sx!${events[0]!.seq.toString().padStart(SEQ_WIDTH, '0')}`, value: Buffer.from(JSON.stringify(delta)) }];
  };

  onFold(fn: (accounts: ReadonlySet<string>) => void): void {
    this.listeners.push(fn);
  }

  /** Adds every committed delta into the counters; one fold at a time. */
  fold(): Promise<void> {
    const next = this.folding.then(() => this.foldAll());
    this.folding = next.catch(() => undefined);
    return next;
  }

  private async foldAll(): Promise<void> {
    const top = `sx!${this.events.watermark.toString().padStart(SEQ_WIDTH, '0')}`;
    for (;;) {
      const sum = new Map<string, Counts>();
      const ops: BatchOp[] = [];
      // all(): one trip to the thread pool for the batch (for-await fetches the first entry alone).
      for (const [k, v] of await this.store.db.iterator({ gte: 'sx!', lte: top, limit: FOLD_BATCH }).all()) {
        ops.push({ type: 'del', key: k });
        for (const [ck, c] of Object.entries(JSON.parse(v.toString('utf8')) as Record<string, Counts>)) {
          const into = sum.get(ck) ?? {};
          add(into, c);
          sum.set(ck, into);
        }
      }
      const deltas = ops.length;
      if (!deltas) return;
      const keys = [...sum.keys()];
      const old = this.store.getManyNow(keys.map((k) => `st!${k}`)); // totals read and rewritten each fold: cached, on this thread (store.ts)
      const accounts = new Set<string>();
      keys.forEach((k, i) => {
        const total: Counts = old[i] ? (JSON.parse(old[i].toString('utf8')) as Counts) : {};
        add(total, sum.get(k)!);
        ops.push({ type: 'put', key: `st!${k}`, value: Buffer.from(JSON.stringify(total)) });
        accounts.add(k.slice(0, k.indexOf('!')));
      });
      for (const a of accounts) ops.push({ type: 'put', key: `sa!${a}`, value: Buffer.alloc(0) });
      await this.store.commit(ops, { sync: false });
      for (const l of this.listeners) l(accounts);
      if (deltas < FOLD_BATCH) return;
    }
  }

  async accounts(): Promise<string[]> {
    const out: string[] = [];
    for await (const k of this.store.db.keys({ gte: 'sa!', lt: 'sa~' })) out.push(k.slice(3));
    return out;
  }

  async query(q: StatsQuery): Promise<StatsResult> {
    const plan = planQuery(q, this.now());
    if (q.fold !== false) await this.fold();
    const accounts = q.account !== undefined ? [q.account] : await this.accounts();
    const groups = new Map<string, Counts>();
    for (const a of accounts) {
      const prefix = `st!${a}!${plan.gran}!${plan.dim}!`;
      for await (const [k, v] of this.store.db.iterator({ gte: prefix + plan.lo, lt: prefix + plan.hi + '~' })) {
        const rest = k.slice(prefix.length);
        const bang = rest.indexOf('!');
        addToGroup(groups, q, plan, a, rest.slice(0, bang), rest.slice(bang + 1), JSON.parse(v.toString('utf8')) as Counts);
      }
    }
    return resultOf(q, plan, groups);
  }

  /** Deletes counters of buckets before `cutoff` (epoch ms), at most `max` keys; returns how many. */
  async prune(cutoff: number, max: number): Promise<number> {
    const day = dayOf(cutoff);
    const hour = hourOf(cutoff);
    const ops: BatchOp[] = [];
    for (const a of await this.accounts()) {
      for (const [gran, dims, edge] of [
        ['h', ['all', 'stream'], hour],
        ['d', ['all', 'tag', 'sender', 'domain', 'stream'], day],
      ] as const) {
        for (const dim of dims) {
          const prefix = `st!${a}!${gran}!${dim}!`;
          for await (const k of this.store.db.keys({ gte: prefix, lt: prefix + edge, limit: max - ops.length })) ops.push({ type: 'del', key: k });
          if (ops.length >= max) break;
        }
      }
      if (ops.length >= max) break;
    }
    if (ops.length) await this.store.commit(ops, { sync: false });
    return ops.length;
  }
}

/**
 * The rates a mailbox provider judges a sender by, from one group's counts (the
 * same definitions as the reputation brake's):
 *   complaint rate   complained / delivered (Gmail's Postmaster Tools spam rate is per delivered message)
 *   bounce rate      bounced / (delivered + bounced): every bounce of the copies that reached an answer
 *   hard-bounce rate hardBounced / (delivered + bounced): addresses that do not exist, the list-hygiene figure
 * 0 when there is nothing to divide by.
 */
export function ratesOf(c: Counts): { complaintRate: number; bounceRate: number; hardBounceRate: number } {
  const delivered = c.delivered ?? 0;
  const outcomes = delivered + (c.bounced ?? 0);
  return {
    complaintRate: delivered ? (c.complained ?? 0) / delivered : 0,
    bounceRate: outcomes ? (c.bounced ?? 0) / outcomes : 0,
    hardBounceRate: outcomes ? (c.hardBounced ?? 0) / outcomes : 0,
  };
}

/**
 * The top of a tag, sender or domain breakdown: rows by `metric`, largest first
 * (ties by key, so the order is stable), at most `limit` of them. The counters
 * are already per value (st!…!tag|sender|domain!…), so ranking is a sort of one
 * query's rows, not another pass over anything.
 */
export function topRows(rows: readonly StatsRow[], metric: Metric, limit = Infinity): StatsRow[] {
  return [...rows].sort((x, y) => y[metric] - x[metric] || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0)).slice(0, limit);
}

/** Periodic folding keeps the deltas few (and the brake current) between queries. */
export const FOLD_INTERVAL_MS = 1_000;
