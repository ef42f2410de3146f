/*
 * stats-postgres.ts — the installation's statistics in PostgreSQL
 * (storage.postgres): the counters of stats.ts, the same per account, hour or
 * day, and dimension, counting every node's events, so GET /api/stats, the
 * dashboard and the reputation brake read the same figures through any node.
 *
 * Where the counts come from: the global event feed (event-shipper.ts), not
 * each node's log. One fold cursor for the installation, the one row of
 * stats_fold: a fold takes it FOR UPDATE SKIP LOCKED (a node that finds it
 * taken leaves the work to the node holding it), reads up to FOLD_BATCH
 * events above it and at or below the feed's committed counter (every row at
 * or below it is committed, pg-feed.ts), adds their counts into
 * stats_counters in one multi-row upsert, sorted by key, and moves the cursor,
 * all in one transaction. So an event is counted once, whichever node folds
 * it and whenever a node dies: a fold that did not commit left both the
 * counts and the cursor as they were. A batch of events costs one statement,
 * not one per event; the commit does not wait for the WAL flush
 * (synchronous_commit off) because a fold lost in a PostgreSQL crash is
 * simply done again from the same cursor.
 *
 * Every node learns which accounts changed, whoever folded them (the
 * reputation brake evaluates them on each node: the kill-switch is per node):
 * after each fold it reads the cursor, and when it moved since it last looked,
 * the accounts of the events in between.
 *
 * The cost: statistics trail the node by the shipping and the next fold
 * (about a second each, FOLD_INTERVAL_MS). With PostgreSQL down, queries fail
 * as SHARED_STATE_UNAVAILABLE (HTTP 503) and the brake waits; the events wait
 * in the nodes' logs and are counted when it returns.
 *
 * Retention: prune() deletes counters of buckets past events.statsRetentionDays
 * (any node may; a batch at a time). Events the feed's retention dropped before
 * they were folded are never counted: the fold lags by seconds, retention by days.
 *
 * Config: storage.postgres (pool), events.statsRetentionDays (retention.ts).
 * Side effects: PostgreSQL transactions.
 */
import type { PostinoEvent } from '../../common/events.js';
import { sharedQuery, sharedTransaction, type PgPool } from '../../common/storage/postgres/pool.js';
import { add, addToGroup, counterCells, metricsOf, planQuery, resultOf, type CounterCell, type Counts, type StatsCounters, type StatsQuery, type StatsResult } from './stats.js';

/** Feed events per fold transaction: a bounded read and one upsert of the counters they touch. */
const FOLD_BATCH = 2_000;
/** Fold transactions per fold() at most: a backlog is worked off over several ticks, never in one long call. */
const MAX_FOLD_STEPS = 20;
/** A query folds first unless a fold ended this recently (the brake asks several questions per fold). */
const QUERY_FOLD_FRESH_MS = 250;

/** The counts a batch of events adds, per counter cell (key: account, gran, dim, bucket, value joined by NUL). */
export function foldCounts(events: readonly PostinoEvent[]): Map<string, { cell: CounterCell; counts: Counts }> {
  const out = new Map<string, { cell: CounterCell; counts: Counts }>();
  for (const e of events) {
    const ms = metricsOf(e);
    if (!ms.length) continue;
    for (const cell of counterCells(e)) {
      const k = [cell.account, cell.gran, cell.dim, cell.bucket, cell.value].join('\0');
      const entry = out.get(k) ?? { cell, counts: {} };
      for (const m of ms) entry.counts[m] = (entry.counts[m] ?? 0) + 1;
      out.set(k, entry);
    }
  }
  return out;
}

export class PgStats implements StatsCounters {
  private folding: Promise<void> = Promise.resolve();
  private foldedAt = 0;
  /** The fold cursor when this node last looked (undefined: not yet). */
  private seen: number | undefined;
  private readonly listeners: Array<(accounts: ReadonlySet<string>) => void> = [];

  constructor(
    private readonly pool: PgPool,
    private readonly now: () => number = Date.now,
  ) {}

  onFold(fn: (accounts: ReadonlySet<string>) => void): void {
    this.listeners.push(fn);
  }

  fold(): Promise<void> {
    const next = this.folding.then(() => this.foldAll());
    this.folding = next.catch(() => undefined);
    return next;
  }

  private async foldAll(): Promise<void> {
    // Where the cursor is before this node's first fold: what is folded from here on is noticed.
    if (this.seen === undefined) this.seen = await this.cursor();
    for (let i = 0; i < MAX_FOLD_STEPS; i++) {
      const r = await this.foldOnce();
      if (r === 'busy' || r < FOLD_BATCH) break;
    }
    this.foldedAt = this.now();
    await this.notice();
  }

  /** One batch: the number of events read, or 'busy' when another node holds the cursor. */
  private foldOnce(): Promise<number | 'busy'> {
    return sharedTransaction(this.pool, 'statistics fold', async (c) => {
      const cur = await c.query<{ folded: string }>('SELECT folded FROM stats_fold WHERE id = 1 FOR UPDATE SKIP LOCKED');
      if (!cur.rows[0]) return 'busy';
      const folded = Number(cur.rows[0].folded);
      const top = Number((await c.query<{ last: string }>('SELECT last FROM event_feed_counter WHERE id = 1')).rows[0]?.last ?? 0);
      if (top <= folded) return 0;
      const r = await c.query<{ body: PostinoEvent }>('SELECT body FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3', [folded, top, FOLD_BATCH]);
      const events = r.rows.map((x) => x.body);
      await c.query('SET LOCAL synchronous_commit = off');
      const sums = [...foldCounts(events).entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([, v]) => v);
      if (sums.length) {
        // Sorted by key: one lock order for every upsert (folds are serialised anyway; prune is not).
        await c.query(
          `INSERT INTO stats_counters (account, gran, dim, bucket, value, counts)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
           ON CONFLICT (account, gran, dim, bucket, value) DO UPDATE SET counts = postino_add_counts(stats_counters.counts, EXCLUDED.counts)`,
          [sums.map((s) => s.cell.account), sums.map((s) => s.cell.gran), sums.map((s) => s.cell.dim), sums.map((s) => s.cell.bucket), sums.map((s) => s.cell.value), sums.map((s) => JSON.stringify(s.counts))],
        );
      }
      // A short page means every committed row up to `top` was read (rows retention dropped are skipped with it).
      const upTo = events.length < FOLD_BATCH ? top : events[events.length - 1]!.seq;
      await c.query('UPDATE stats_fold SET folded = $1 WHERE id = 1', [upTo]);
      return events.length;
    });
  }

  private async cursor(): Promise<number> {
    const r = await sharedQuery<{ folded: string }>(this.pool, 'statistics fold', 'SELECT folded FROM stats_fold WHERE id = 1');
    return Number(r.rows[0]?.folded ?? 0);
  }

  /** Tells the listeners which accounts the folds since the last look (by any node) touched. */
  private async notice(): Promise<void> {
    if (!this.listeners.length) return;
    const now = await this.cursor();
    const since = this.seen ?? now;
    if (now <= since) return;
    const r = await sharedQuery<{ account: string }>(this.pool, 'statistics fold', 'SELECT DISTINCT account FROM events WHERE seq > $1 AND seq <= $2', [since, now]);
    this.seen = now;
    const accounts = new Set(r.rows.map((x) => x.account));
    if (accounts.size) for (const l of this.listeners) l(accounts);
  }

  async query(q: StatsQuery): Promise<StatsResult> {
    const plan = planQuery(q, this.now());
    if (q.fold !== false && this.now() - this.foldedAt >= QUERY_FOLD_FRESH_MS) await this.fold();
    const where = ['gran = $1', 'dim = $2', 'bucket >= $3', 'bucket <= $4'];
    const values: unknown[] = [plan.gran, plan.dim, plan.lo, plan.hi];
    if (q.account !== undefined) where.push(`account = $${values.push(q.account)}`);
    if (q.stream !== undefined) where.push(`value = $${values.push(q.stream)}`);
    const r = await sharedQuery<{ account: string; bucket: string; value: string; counts: Record<string, string | number> }>(
      this.pool,
      'statistics',
      `SELECT account, bucket, value, counts FROM stats_counters WHERE ${where.join(' AND ')}`,
      values,
    );
    const groups = new Map<string, Counts>();
    for (const row of r.rows) {
      const counts: Counts = {};
      add(counts, Object.fromEntries(Object.entries(row.counts).map(([m, n]) => [m, Number(n)])) as Counts);
      addToGroup(groups, q, plan, row.account, row.bucket, row.value, counts);
    }
    return resultOf(q, plan, groups);
  }

  async prune(cutoff: number, max: number): Promise<number> {
    const iso = new Date(cutoff).toISOString();
    const r = await sharedQuery(
      this.pool,
      'statistics retention',
      `DELETE FROM stats_counters WHERE ctid IN (
         SELECT ctid FROM stats_counters WHERE (gran = 'h' AND bucket < $1) OR (gran = 'd' AND bucket < $2) LIMIT $3)`,
      [iso.slice(0, 13), iso.slice(0, 10), max],
    );
    return r.rowCount ?? 0;
  }
}

