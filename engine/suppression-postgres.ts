/*
 * suppression-postgres.ts — the suppression list in PostgreSQL (storage.postgres),
 * shared by every hosted node that names the database: an address suppressed
 * through node A's API, or by a bounce node B received, stops mail on every node
 * at the next check. Table `suppressions` (common/storage/postgres/migrations.ts),
 * primary key (account, scope, address), byte-ordered like the LevelDB keys.
 *
 * Round trips: a check of many recipients, a listing page, an import batch are
 * each one statement, and the checks of messages rewrapped or delivered at the
 * same time go out together as one (storage/postgres/group-statement.ts) (arrays passed as parameters and `unnest`ed, so a batch of
 * 10,000 rows is still 7 parameters). Writes are upserts: adding an entry that
 * exists replaces it, as a LevelDB put does.
 *
 * PostgreSQL down:
 *   - reads (check, get, listing) throw SHARED_STATE_UNAVAILABLE: the message
 *     waits in the local queue and is tried again (common/dead-letter.ts), the
 *     API answers 503. Nothing is ever sent without its check.
 *   - `addOps` (a hard bounce, a complaint, an unsubscribe, written with its
 *     event) cannot wait: it parks the entries in the node's own LevelDB
 *     (`so!<account>!<scope>!<address>`, committed in the caller's batch with
 *     the event) and they are written to PostgreSQL as soon as it answers:
 *     every FLUSH_INTERVAL_MS, and before any read or removal on this node, so
 *     this node never reads around its own parked entries (one LevelDB seek per
 *     read while nothing is parked). Other nodes see them once written.
 *
 * Config: storage.postgres.* (common/storage/postgres/pool.ts).
 * Side effects: PostgreSQL queries; LevelDB writes of parked entries; a timer.
 */
import { normalizeEmail } from '../common/address.js';
import type { Stream } from '../common/config.js';
import { PostinoError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { GroupStatement } from '../common/storage/postgres/group-statement.js';
import { sharedQuery, type PgPool } from '../common/storage/postgres/pool.js';
import type { BatchOp, Store } from '../common/store.js';
import { completeEntry, listScope, stops, type ListedSuppression, type NewSuppression, type SuppressionCheck, type SuppressionEntry, type SuppressionList, type SuppressionReason } from './suppression.js';

/** Rows per listing page: one round trip per thousand entries of an export. */
const PAGE_ROWS = 1_000;
/** Parked entries written per statement when PostgreSQL is back. */
const FLUSH_BATCH = 1_000;
/**
 * After this many rows written by this node since its last ANALYZE, it runs one: a list
 * imported into a fresh table otherwise keeps the planner's "almost empty" statistics
 * until autovacuum's next round (up to a minute), and with them a check of 500 addresses
 * read the whole account (34 ms for 200,000 entries) instead of probing the key (2 ms).
 */
const ANALYZE_AFTER_ROWS = 10_000;
/** How often parked entries are retried while PostgreSQL is away: they reach the other nodes within this long of its return. */
const FLUSH_INTERVAL_MS = 2_000;
const PARKED = 'so!';

interface Row {
  account: string;
  scope: string;
  address: string;
  reason: SuppressionReason;
  at: Date;
  detail: string | null;
  queue_id: string | null;
}

const COLUMNS = 'account, scope, address, reason, at, detail, queue_id';

function entryOf(r: Row): SuppressionEntry {
  return { address: r.address, scope: r.scope, reason: r.reason, at: r.at.toISOString(), ...(r.detail !== null ? { detail: r.detail } : {}), ...(r.queue_id !== null ? { queueId: r.queue_id } : {}) };
}

/** Opaque listing cursor: the row's key, so the next page starts right after it. */
function cursorOf(r: { account: string; scope: string; address: string }): string {
  return Buffer.from(JSON.stringify([r.account, r.scope, r.address])).toString('base64url');
}

function parseCursor(c: string | undefined): [string, string, string] | undefined {
  if (!c) return undefined;
  try {
    const v = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as unknown;
    return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'string') ? (v as [string, string, string]) : undefined;
  } catch {
    return undefined;
  }
}

function parkedKey(account: string, scope: string, address: string): string {
  return `${PARKED}${account}!${scope}!${address}`;
}

interface Asked {
  account: string;
  address: string;
  scope: string | undefined;
  stream: Stream;
}

export class PgSuppressionList implements SuppressionList {
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private writtenSinceAnalyze = 0;
  private analyzing: Promise<void> | undefined;
  private readonly checks = new GroupStatement<Asked[], Array<SuppressionEntry | undefined>>((batch) => this.checkBatch(batch));

  constructor(
    private readonly pool: PgPool,
    /** The node's LevelDB, for entries parked while PostgreSQL is away. */
    private readonly store: Store,
    private readonly log?: Logger,
  ) {
    this.timer = setInterval(() => {
      this.flushParked().catch((err: unknown) => this.log?.debug({ err }, 'parked suppressions wait for PostgreSQL'));
    }, FLUSH_INTERVAL_MS).unref();
  }

  /** Upserts in one statement; the last of several entries for one key wins, as in a LevelDB batch. */
  private async upsert(rows: ReadonlyArray<{ account: string; e: SuppressionEntry }>): Promise<void> {
    if (rows.length === 0) return;
    const byKey = new Map<string, { account: string; e: SuppressionEntry }>();
    for (const r of rows) byKey.set(JSON.stringify([r.account, r.e.scope, r.e.address]), r);
    const all = [...byKey.values()];
    await sharedQuery(
      this.pool,
      'adding suppressions',
      `INSERT INTO suppressions (${COLUMNS})
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[])
       ON CONFLICT (account, scope, address) DO UPDATE SET reason = EXCLUDED.reason, at = EXCLUDED.at, detail = EXCLUDED.detail, queue_id = EXCLUDED.queue_id`,
      [all.map((r) => r.account), all.map((r) => r.e.scope), all.map((r) => r.e.address), all.map((r) => r.e.reason), all.map((r) => r.e.at), all.map((r) => r.e.detail ?? null), all.map((r) => r.e.queueId ?? null)],
    );
    this.writtenSinceAnalyze += all.length;
    if (this.writtenSinceAnalyze >= ANALYZE_AFTER_ROWS && !this.analyzing) {
      this.writtenSinceAnalyze = 0;
      this.analyzing = sharedQuery(this.pool, 'analyzing suppressions', 'ANALYZE suppressions')
        .then(() => undefined, (err: unknown) => this.log?.warn({ err }, 'ANALYZE suppressions failed; autovacuum will'))
        .finally(() => (this.analyzing = undefined));
    }
  }

  async addOps(account: string, entries: readonly NewSuppression[]): Promise<BatchOp[]> {
    const complete = entries.map(completeEntry);
    try {
      await this.flushParked();
      await this.upsert(complete.map((e) => ({ account, e })));
      return [];
    } catch (err) {
      if (!(err instanceof PostinoError) || err.code !== 'SHARED_STATE_UNAVAILABLE') throw err;
      // Parked with the caller's batch, written to PostgreSQL when it answers (see the header).
      this.log?.warn({ event: 'suppressions-parked', account, count: complete.length, err: err.reason }, 'PostgreSQL unavailable: suppressions kept locally until it returns');
      return complete.map((e) => ({ type: 'put', key: parkedKey(account, e.scope, e.address), value: Buffer.from(JSON.stringify({ account, e })) }));
    }
  }

  async add(account: string, entry: NewSuppression): Promise<void> {
    await this.flushParked();
    await this.upsert([{ account, e: completeEntry(entry) }]);
  }

  /**
   * Writes the parked entries to PostgreSQL (one statement per FLUSH_BATCH), then forgets
   * them locally. Resolves at once when none is parked; throws SHARED_STATE_UNAVAILABLE
   * while PostgreSQL is away. One flush at a time.
   */
  async flushParked(): Promise<void> {
    if (this.flushing) return this.flushing;
    const first = await this.store.db.keys({ gte: PARKED, lt: `${PARKED}\uffff`, limit: 1 }).all();
    if (first.length === 0) return;
    this.flushing = (async () => {
      for (let round = 0; round < 1_000_000; round++) {
        const batch = await this.store.db.iterator({ gte: PARKED, lt: `${PARKED}\uffff`, limit: FLUSH_BATCH }).all();
        if (batch.length === 0) return;
        await this.upsert(batch.map(([, v]) => JSON.parse(v.toString('utf8')) as { account: string; e: SuppressionEntry }));
        await this.store.commit(batch.map(([k]) => ({ type: 'del', key: k })), { sync: true });
        this.log?.info({ event: 'suppressions-unparked', count: batch.length }, 'parked suppressions written to PostgreSQL');
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  async remove(account: string, address: string, scope = '*'): Promise<boolean> {
    await this.flushParked();
    const r = await sharedQuery(this.pool, 'removing a suppression', 'DELETE FROM suppressions WHERE account = $1 AND scope = $2 AND address = $3', [account, scope, normalizeEmail(address)]);
    return (r.rowCount ?? 0) > 0;
  }

  async get(account: string, address: string, scope = '*'): Promise<SuppressionEntry | undefined> {
    await this.flushParked();
    const r = await sharedQuery<Row>(this.pool, 'reading a suppression', `SELECT ${COLUMNS} FROM suppressions WHERE account = $1 AND scope = $2 AND address = $3`, [account, scope, normalizeEmail(address)]);
    return r.rows[0] ? entryOf(r.rows[0]) : undefined;
  }

  async suppressedMany(account: string, addresses: readonly string[]): Promise<boolean[]> {
    if (addresses.length === 0) return [];
    await this.flushParked();
    const norm = addresses.map(normalizeEmail);
    const r = await sharedQuery<{ address: string }>(this.pool, 'checking suppressions', `SELECT address FROM suppressions WHERE account = $1 AND scope = '*' AND address = ANY($2::text[])`, [account, norm]);
    const found = new Set(r.rows.map((x) => x.address));
    return norm.map((a) => found.has(a));
  }

  async check(account: string, address: string, opts: { list?: string | undefined; stream: Stream }): Promise<SuppressionEntry | undefined> {
    return (await this.checkMany(account, [{ address, ...opts }]))[0];
  }

  async checkMany(account: string, checks: readonly SuppressionCheck[]): Promise<Array<SuppressionEntry | undefined>> {
    if (checks.length === 0) return [];
    await this.flushParked();
    return this.checks.run(checks.map((c) => ({ account, address: normalizeEmail(c.address), scope: c.list ? listScope(c.list) : undefined, stream: c.stream })));
  }

  /**
   * One statement for the checks of several messages: the `*` rows of every address and the
   * list-scope rows of the addresses checked with a list, each column as `= ANY(array)` inside
   * the primary key's index condition (a plan that cannot go wrong on stale statistics, unlike a
   * join to `unnest`), then the policy (`stops`) per check. The arrays are per column, so the
   * rows returned are a superset (another account's address, a list nobody asked for that
   * address); the lookup below uses only the triples asked.
   */
  private async checkBatch(batch: Asked[][]): Promise<Array<Array<SuppressionEntry | undefined>>> {
    const asked = batch.flat();
    const listed = asked.filter((a) => a.scope !== undefined);
    const uniq = (xs: string[]): string[] => [...new Set(xs)];
    const r = await sharedQuery<Row>(
      this.pool,
      'checking suppressions',
      `SELECT ${COLUMNS} FROM suppressions WHERE account = ANY($1::text[]) AND scope = '*' AND address = ANY($2::text[])
       UNION ALL
       SELECT ${COLUMNS} FROM suppressions WHERE account = ANY($3::text[]) AND scope = ANY($4::text[]) AND address = ANY($5::text[])`,
      [uniq(asked.map((a) => a.account)), uniq(asked.map((a) => a.address)), uniq(listed.map((a) => a.account)), uniq(listed.map((a) => a.scope!)), uniq(listed.map((a) => a.address))],
    );
    const found = new Map(r.rows.map((row) => [`${row.account}\n${row.scope}\n${row.address}`, entryOf(row)]));
    return batch.map((checks) => checks.map((a) => stops([found.get(`${a.account}\n*\n${a.address}`), a.scope ? found.get(`${a.account}\n${a.scope}\n${a.address}`) : undefined], a.stream)));
  }

  async *entries(o: { account?: string | undefined; after?: string | undefined } = {}): AsyncGenerator<ListedSuppression> {
    await this.flushParked();
    let after = parseCursor(o.after);
    if (after && o.account && after[0] !== o.account) after = undefined; // another account's cursor: from the start
    for (let page = 0; page < Number.MAX_SAFE_INTEGER; page++) {
      let r;
      if (o.account) {
        r = after
          ? await sharedQuery<Row>(this.pool, 'listing suppressions', `SELECT ${COLUMNS} FROM suppressions WHERE account = $1 AND (scope, address) > ($2, $3) ORDER BY scope, address LIMIT ${PAGE_ROWS}`, [o.account, after[1], after[2]])
          : await sharedQuery<Row>(this.pool, 'listing suppressions', `SELECT ${COLUMNS} FROM suppressions WHERE account = $1 ORDER BY scope, address LIMIT ${PAGE_ROWS}`, [o.account]);
      } else {
        r = after
          ? await sharedQuery<Row>(this.pool, 'listing suppressions', `SELECT ${COLUMNS} FROM suppressions WHERE (account, scope, address) > ($1, $2, $3) ORDER BY account, scope, address LIMIT ${PAGE_ROWS}`, after)
          : await sharedQuery<Row>(this.pool, 'listing suppressions', `SELECT ${COLUMNS} FROM suppressions ORDER BY account, scope, address LIMIT ${PAGE_ROWS}`);
      }
      for (const row of r.rows) yield { ...entryOf(row), account: row.account, cursor: cursorOf(row) };
      if (r.rows.length < PAGE_ROWS) return;
      const last = r.rows[r.rows.length - 1]!;
      after = [last.account, last.scope, last.address];
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.analyzing;
    await this.flushing?.catch(() => undefined);
  }
}
