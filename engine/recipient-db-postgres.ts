/*
 * recipient-db-postgres.ts — the recipient database in PostgreSQL
 * (storage.postgres), shared by every hosted node that names the database: a
 * recipient imported or PATCHed through node A is what node B merges into its
 * next message. Tables (common/storage/postgres/migrations.ts, version 7):
 *   recipients (account, address) → lists, first_seen, fields (jsonb) and the
 *     counters; text keys COLLATE "C", so listings and exports page in the
 *     byte order of the LevelDB keys (engine/recipient-db.ts)
 *   recipient_erasures (account, pseudonym): addresses deleted on a privacy
 *     request, which traffic and imports do not create again
 *   recipient_counter_cursors (node → seq): how far each node's projection
 *     has counted its own event log (recipients/projection.ts)
 *
 * Round trips: the rewrap's lookup is one statement per message (the entries
 * and the deletion marks of all its recipients, `= ANY($n)`); an import batch
 * is two reads and one multi-row upsert (arrays `unnest`ed: 5,000 rows are
 * still 4 parameters); a projection pass is one transaction.
 *
 * Writes that can race between nodes are merged by the statement, not by a
 * read-modify-write in the node: a PATCH locks the row (SELECT … FOR UPDATE),
 * counters are added (`sent = sent + n`), lists are unioned.
 *
 * Entries created by traffic (a new address, a known one mailed through a new
 * list) are parked in the node's LevelDB with the rewrap's queue move
 * (`rp!<account>!<address>!<list>`) and written by one upsert per
 * FLUSH_INTERVAL_MS: no extra round trip per message. Every read on this node
 * but the rewrap's own lookup writes them first (one LevelDB seek while none
 * is parked), so the API, imports and counters never read around them;
 * another node sees them within FLUSH_INTERVAL_MS. They carry no fields, so a
 * merge never misses a value because of it. An address deleted before its
 * parked entry is written is not created again.
 *
 * PostgreSQL down: every read throws SHARED_STATE_UNAVAILABLE (451 4.3.0 /
 * HTTP 503): the rewrap gives the message back and it is tried again, never
 * sent without its merge values; API calls answer 503. Parked entries wait.
 *
 * Config: storage.postgres.* (common/storage/postgres/pool.ts).
 * Side effects: PostgreSQL queries; LevelDB writes of parked entries; a timer.
 */
import { normalizeEmail } from '../common/address.js';
import { PostinoError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { GroupStatement } from '../common/storage/postgres/group-statement.js';
import { sharedQuery, sharedTransaction, type PgPool } from '../common/storage/postgres/pool.js';
import type { BatchOp, Store } from '../common/store.js';
import { KeyedLock } from '../common/keyed-lock.js';
import { NO_COUNTERS, type CounterDelta, type ImportedRow, type RecipientCounters, type RecipientDb, type RecipientRecord, type RecipientView } from './recipient-db.js';
import { MAX_FIELDS } from './recipients/fields.js';
import type { Pseudonymizer } from './recipients/pseudonym.js';

/** Rows per listing page: one round trip per thousand entries of an export. */
const PAGE_ROWS = 1_000;
/** Parked traffic entries written per statement. */
const FLUSH_BATCH = 1_000;
/** How often parked traffic entries are written: another node sees a new address this long after its first message at most. */
const FLUSH_INTERVAL_MS = 1_000;
/** As suppression-postgres.ts: after an import this large, ANALYZE, so lookups probe the key at once instead of scanning. */
const ANALYZE_AFTER_ROWS = 10_000;
const PARKED = 'rp!';

interface Row {
  account: string;
  address: string;
  lists: string[];
  first_seen: Date;
  fields: Record<string, string>;
}

interface FullRow extends Row {
  sent: string;
  bounced: string;
  complained: string;
  last_sent: Date | null;
  last_opened: Date | null;
  last_clicked: Date | null;
}

interface Parked {
  account: string;
  address: string;
  firstSeen: string;
  list: string | null;
  pseudonym: string | null;
}

const RECORD = 'address, fields, lists, first_seen';

function recordOf(r: Pick<Row, 'address' | 'fields' | 'lists' | 'first_seen'>): RecipientRecord {
  return { address: r.address, fields: r.fields, lists: r.lists, firstSeen: r.first_seen.toISOString() };
}

function countersOf(r: FullRow): RecipientCounters {
  const c: RecipientCounters = { sent: Number(r.sent), bounced: Number(r.bounced), complained: Number(r.complained) };
  if (r.last_sent) c.lastSent = r.last_sent.toISOString();
  if (r.last_opened) c.lastOpened = r.last_opened.toISOString();
  if (r.last_clicked) c.lastClicked = r.last_clicked.toISOString();
  return c;
}

/** Opaque listing cursor: the row's key, so the next page starts right after it. */
function cursorOf(account: string, address: string): string {
  return Buffer.from(JSON.stringify([account, address])).toString('base64url');
}

function parseCursor(c: string | undefined): [string, string] | undefined {
  if (!c) return undefined;
  try {
    const v = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as unknown;
    return Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'string') ? (v as [string, string]) : undefined;
  } catch {
    return undefined;
  }
}

interface TrafficLookup {
  account: string;
  norm: string[];
  marks: string[];
}
interface TrafficFound {
  found: Map<string, RecipientRecord>;
  erasedSet: Set<string>;
}

export class PgRecipientDb implements RecipientDb {
  private readonly lock = new KeyedLock();
  private readonly lookups = new GroupStatement<TrafficLookup, TrafficFound>((reqs) => this.lookupBatch(reqs));
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private writtenSinceAnalyze = 0;
  private analyzing: Promise<void> | undefined;

  constructor(
    private readonly pool: PgPool,
    /** The node's LevelDB, for traffic-created entries parked until written. */
    private readonly store: Store,
    /** This node's id: the key of its projection cursor. */
    private readonly node: string,
    readonly pseudonyms?: Pseudonymizer,
    private readonly log?: Logger,
  ) {
    this.timer = setInterval(() => {
      this.flushParked().catch((err: unknown) => this.log?.debug({ err }, 'parked recipient entries wait for PostgreSQL'));
    }, FLUSH_INTERVAL_MS).unref();
  }

  /** One node's read-modify-write sections one at a time (the statements themselves are safe between nodes). */
  exclusive<T>(section: () => Promise<T>): Promise<T> {
    return this.lock.run('recipients', section);
  }

  async getMany(account: string, addresses: readonly string[]): Promise<Array<RecipientRecord | undefined>> {
    if (addresses.length === 0) return [];
    await this.flushParked();
    const norm = addresses.map(normalizeEmail);
    const r = await sharedQuery<Row>(this.pool, 'reading recipients', `SELECT ${RECORD} FROM recipients WHERE account = $1 AND address = ANY($2::text[])`, [account, [...new Set(norm)]]);
    const found = new Map(r.rows.map((row) => [row.address, recordOf(row)]));
    return norm.map((a) => found.get(a));
  }

  async get(account: string, address: string): Promise<RecipientRecord | undefined> {
    return (await this.getMany(account, [address]))[0];
  }

  /**
   * One statement per message: the entries and the deletion marks (see the header); the lookups of
   * messages rewrapped at the same time go out together (group-statement.ts). Parked entries are
   * not written first: they carry no fields.
   */
  async lookupForTraffic(account: string, addresses: readonly string[]): Promise<{ records: Array<RecipientRecord | undefined>; erased: boolean[] }> {
    if (addresses.length === 0) return { records: [], erased: [] };
    const p = this.pseudonyms;
    const norm = addresses.map(normalizeEmail);
    const marks = p ? norm.map((a) => p.of(account, a)) : [];
    const { found, erasedSet } = await this.lookups.run({ account, norm, marks });
    const records = norm.map((a) => found.get(a));
    return { records, erased: norm.map((_, i) => p !== undefined && records[i] === undefined && erasedSet.has(marks[i]!)) };
  }

  /**
   * The lookups of several messages as one statement: each column as `= ANY(array)`, so the rows are
   * a superset (another account's address); each message keeps only its account's rows.
   */
  private async lookupBatch(reqs: TrafficLookup[]): Promise<TrafficFound[]> {
    const uniq = (xs: string[]): string[] => [...new Set(xs)];
    const r = await sharedQuery<Row & { erased: boolean }>(
      this.pool,
      'reading recipients for merge fields',
      `SELECT false AS erased, account, ${RECORD} FROM recipients WHERE account = ANY($1::text[]) AND address = ANY($2::text[])
       UNION ALL
       SELECT true, account, pseudonym, NULL::jsonb, NULL::jsonb, NULL::timestamptz FROM recipient_erasures WHERE account = ANY($1::text[]) AND pseudonym = ANY($3::text[])`,
      [uniq(reqs.map((q) => q.account)), uniq(reqs.flatMap((q) => q.norm)), uniq(reqs.flatMap((q) => q.marks))],
    );
    return reqs.map((q) => {
      const found = new Map<string, RecipientRecord>();
      const erasedSet = new Set<string>();
      for (const row of r.rows) {
        if (row.account !== q.account) continue;
        if (row.erased) erasedSet.add(row.address);
        else found.set(row.address, recordOf(row));
      }
      return { found, erasedSet };
    });
  }

  trafficOps(account: string, rec: RecipientRecord, list: string | undefined): BatchOp[] {
    const address = normalizeEmail(rec.address);
    const v: Parked = { account, address, firstSeen: rec.firstSeen, list: list ?? null, pseudonym: this.pseudonyms?.of(account, address) ?? null };
    return [{ type: 'put', key: `${PARKED}${account}!${address}!${list ?? ''}`, value: Buffer.from(JSON.stringify(v)) }];
  }

  /**
   * Writes the parked traffic entries (one upsert per FLUSH_BATCH: lists unioned, the earlier
   * first-seen kept, a deleted address skipped), then forgets them locally. Resolves at once
   * when none is parked; throws SHARED_STATE_UNAVAILABLE while PostgreSQL is away. One at a time.
   */
  async flushParked(): Promise<void> {
    if (this.flushing) return this.flushing;
    const first = await this.store.db.keys({ gte: PARKED, lt: `${PARKED}\uffff`, limit: 1 }).all();
    if (first.length === 0) return;
    this.flushing = (async () => {
      for (let round = 0; round < 1_000_000; round++) {
        const batch = await this.store.db.iterator({ gte: PARKED, lt: `${PARKED}\uffff`, limit: FLUSH_BATCH }).all();
        if (batch.length === 0) return;
        const byKey = new Map<string, { account: string; address: string; lists: string[]; firstSeen: string; pseudonym: string | null }>();
        for (const [, v] of batch) {
          const p = JSON.parse(v.toString('utf8')) as Parked;
          const k = `${p.account}\n${p.address}`;
          const e = byKey.get(k) ?? { account: p.account, address: p.address, lists: [], firstSeen: p.firstSeen, pseudonym: p.pseudonym };
          if (p.list !== null && !e.lists.includes(p.list)) e.lists.push(p.list);
          if (p.firstSeen < e.firstSeen) e.firstSeen = p.firstSeen;
          byKey.set(k, e);
        }
        const all = [...byKey.values()];
        await sharedQuery(
          this.pool,
          'writing recipients created by traffic',
          `INSERT INTO recipients (account, address, lists, first_seen)
           SELECT d.account, d.address, d.lists, d.first_seen
             FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::text[]) AS d(account, address, lists, first_seen, pseudonym)
            WHERE d.pseudonym IS NULL OR NOT EXISTS (SELECT 1 FROM recipient_erasures e WHERE e.account = d.account AND e.pseudonym = d.pseudonym)
           ON CONFLICT (account, address) DO UPDATE SET
             lists = recipients.lists || COALESCE((SELECT jsonb_agg(x) FROM jsonb_array_elements(EXCLUDED.lists) x WHERE NOT recipients.lists @> jsonb_build_array(x)), '[]'::jsonb),
             first_seen = LEAST(recipients.first_seen, EXCLUDED.first_seen)`,
          [all.map((e) => e.account), all.map((e) => e.address), all.map((e) => JSON.stringify(e.lists)), all.map((e) => e.firstSeen), all.map((e) => e.pseudonym)],
        );
        await this.store.commit(batch.map(([k]) => ({ type: 'del', key: k })), { sync: false });
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  async erasedMany(account: string, addresses: readonly string[]): Promise<boolean[]> {
    const p = this.pseudonyms;
    if (!p || addresses.length === 0) return addresses.map(() => false);
    const marks = addresses.map((a) => p.of(account, a));
    const r = await sharedQuery<{ pseudonym: string }>(this.pool, 'reading deleted recipients', 'SELECT pseudonym FROM recipient_erasures WHERE account = $1 AND pseudonym = ANY($2::text[])', [account, [...new Set(marks)]]);
    const found = new Set(r.rows.map((x) => x.pseudonym));
    return marks.map((m) => found.has(m));
  }

  /** One multi-row upsert; the fields are laid over what is stored, so a PATCH on another node meanwhile keeps its other keys. */
  async writeImported(account: string, rows: readonly ImportedRow[]): Promise<void> {
    if (rows.length === 0) return;
    await sharedQuery(
      this.pool,
      'importing recipients',
      `INSERT INTO recipients (account, address, fields, lists, first_seen)
       SELECT $1, d.address, d.fields, d.lists, d.first_seen FROM unnest($2::text[], $3::jsonb[], $4::jsonb[], $5::timestamptz[]) AS d(address, fields, lists, first_seen)
       ON CONFLICT (account, address) DO UPDATE SET fields = recipients.fields || EXCLUDED.fields`,
      [account, rows.map((r) => normalizeEmail(r.rec.address)), rows.map((r) => JSON.stringify(r.rec.fields)), rows.map((r) => JSON.stringify(r.rec.lists)), rows.map((r) => r.rec.firstSeen)],
    );
    this.writtenSinceAnalyze += rows.length;
    if (this.writtenSinceAnalyze >= ANALYZE_AFTER_ROWS && !this.analyzing) {
      this.writtenSinceAnalyze = 0;
      this.analyzing = sharedQuery(this.pool, 'analyzing recipients', 'ANALYZE recipients')
        .then(() => undefined, (err: unknown) => this.log?.warn({ err }, 'ANALYZE recipients failed; autovacuum will'))
        .finally(() => (this.analyzing = undefined));
    }
  }

  /** In one transaction with the row locked, so a PATCH on another node at the same moment is applied before or after, never lost. */
  async setFields(account: string, address: string, fields: Record<string, string | null>, replace = false): Promise<RecipientRecord & { created: boolean }> {
    await this.flushParked();
    const norm = normalizeEmail(address);
    return sharedTransaction(this.pool, 'writing recipient fields', async (c) => {
      const ins = await c.query('INSERT INTO recipients (account, address, first_seen) VALUES ($1, $2, $3) ON CONFLICT (account, address) DO NOTHING', [account, norm, new Date().toISOString()]);
      const created = (ins.rowCount ?? 0) > 0;
      const cur = (await c.query<Row>(`SELECT ${RECORD} FROM recipients WHERE account = $1 AND address = $2 FOR UPDATE`, [account, norm])).rows[0]!;
      const next = recordOf(cur);
      if (replace) next.fields = {};
      for (const [k, v] of Object.entries(fields)) {
        if (v === null) delete next.fields[k];
        else next.fields[k] = v;
      }
      if (Object.keys(next.fields).length > MAX_FIELDS) throw new PostinoError('BAD_REQUEST', `more than ${MAX_FIELDS} fields`);
      await c.query('UPDATE recipients SET fields = $3 WHERE account = $1 AND address = $2', [account, norm, JSON.stringify(next.fields)]);
      if (created && this.pseudonyms) await c.query('DELETE FROM recipient_erasures WHERE account = $1 AND pseudonym = $2', [account, this.pseudonyms.of(account, norm)]);
      return { ...next, created };
    });
  }

  /** Deleted here and now (one transaction); nothing for the eraser's LevelDB batch. */
  async eraseOps(account: string, address: string, at: string): Promise<BatchOp[]> {
    const norm = normalizeEmail(address);
    await sharedTransaction(this.pool, 'deleting a recipient', async (c) => {
      await c.query('DELETE FROM recipients WHERE account = $1 AND address = $2', [account, norm]);
      if (this.pseudonyms) await c.query('INSERT INTO recipient_erasures (account, pseudonym, at) VALUES ($1, $2, $3) ON CONFLICT (account, pseudonym) DO UPDATE SET at = EXCLUDED.at', [account, this.pseudonyms.of(account, norm), at]);
    });
    return [];
  }

  async viewMany(account: string, addresses: readonly string[]): Promise<Array<RecipientView | undefined>> {
    if (addresses.length === 0) return [];
    await this.flushParked();
    const norm = addresses.map(normalizeEmail);
    const r = await sharedQuery<FullRow>(this.pool, 'reading recipients', 'SELECT * FROM recipients WHERE account = $1 AND address = ANY($2::text[])', [account, [...new Set(norm)]]);
    const found = new Map(r.rows.map((row) => [row.address, row]));
    return norm.map((a) => {
      const row = found.get(a);
      return row ? { account, ...recordOf(row), ...NO_COUNTERS, ...countersOf(row) } : undefined;
    });
  }

  async *entries(o: { account?: string | undefined; after?: string | undefined } = {}): AsyncGenerator<{ account: string; address: string; cursor: string }> {
    await this.flushParked();
    let after = parseCursor(o.after);
    if (after && o.account && after[0] !== o.account) after = undefined; // another account's cursor: from the start, as on LevelDB
    for (let page = 0; page < Number.MAX_SAFE_INTEGER; page++) {
      const where = [o.account ? 'account = $1' : 'true', after ? (o.account ? 'address > $2' : '(account, address) > ($1, $2)') : 'true'].join(' AND ');
      const params = o.account ? [o.account, ...(after ? [after[1]] : [])] : after ? after : [];
      const r = await sharedQuery<{ account: string; address: string }>(this.pool, 'listing recipients', `SELECT account, address FROM recipients WHERE ${where} ORDER BY account, address LIMIT ${PAGE_ROWS}`, params);
      for (const row of r.rows) yield { account: row.account, address: row.address, cursor: cursorOf(row.account, row.address) };
      if (r.rows.length < PAGE_ROWS) return;
      const last = r.rows[r.rows.length - 1]!;
      after = [last.account, last.address];
    }
  }

  async fieldNames(account: string): Promise<string[]> {
    await this.flushParked();
    const r = await sharedQuery<{ k: string }>(this.pool, 'reading field names', `SELECT DISTINCT jsonb_object_keys(fields) AS k FROM recipients WHERE account = $1 AND fields <> '{}'::jsonb`, [account]);
    return r.rows.map((x) => x.k).sort();
  }

  /**
   * One transaction: this node's cursor moves to `last` only if it is behind (a pass a crash
   * left uncommitted locally is not counted twice), and the deltas are added to the entries
   * that exist. Entries parked by this node's traffic are written first, so a first message's
   * delivery counts on the entry it created.
   */
  async countEvents(deltas: readonly CounterDelta[], last: number, localOps: BatchOp[]): Promise<void> {
    await this.flushParked();
    await sharedTransaction(this.pool, 'counting recipient events', async (c) => {
      const moved = await c.query(
        `INSERT INTO recipient_counter_cursors (node, seq) VALUES ($1, $2)
         ON CONFLICT (node) DO UPDATE SET seq = EXCLUDED.seq WHERE recipient_counter_cursors.seq < EXCLUDED.seq`,
        [this.node, last],
      );
      if ((moved.rowCount ?? 0) === 0 || deltas.length === 0) return;
      const col = <K extends keyof RecipientCounters>(k: K): Array<RecipientCounters[K] | null> => deltas.map((x) => x.d[k] ?? null);
      await c.query(
        `UPDATE recipients r SET sent = r.sent + d.sent, bounced = r.bounced + d.bounced, complained = r.complained + d.complained,
                last_sent = GREATEST(r.last_sent, d.last_sent), last_opened = GREATEST(r.last_opened, d.last_opened), last_clicked = GREATEST(r.last_clicked, d.last_clicked)
           FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[])
                AS d(account, address, sent, bounced, complained, last_sent, last_opened, last_clicked)
          WHERE r.account = d.account AND r.address = d.address`,
        [deltas.map((x) => x.account), deltas.map((x) => x.address), col('sent'), col('bounced'), col('complained'), col('lastSent'), col('lastOpened'), col('lastClicked')],
      );
    });
    await this.store.commit(localOps, { sync: false });
  }

  async countedUpTo(): Promise<number | undefined> {
    const r = await sharedQuery<{ seq: string }>(this.pool, 'reading the recipient counters cursor', 'SELECT seq FROM recipient_counter_cursors WHERE node = $1', [this.node]);
    return r.rows[0] ? Number(r.rows[0].seq) : 0;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.analyzing;
    await this.flushing?.catch(() => undefined);
    await this.flushParked().catch((err: unknown) => this.log?.warn({ err: { message: (err as Error).message } }, 'parked recipient entries stay parked until the next start'));
  }
}
