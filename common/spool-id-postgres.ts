/*
 * spool-id-postgres.ts — the forwarder's spool ids (spool-id.ts) known to every
 * hosted node (storage.postgres): a message the forwarder retries through node
 * B after node A took it but the reply was lost is answered `250 … (already
 * queued)` by B, not queued twice.
 *
 * Each node still remembers its own ids in its LevelDB (SeenSpoolIds, in the
 * enqueue's batch): that stays the truth of what it accepted. Table spool_ids
 * (migration 4) is the shared index, written around that batch:
 *   claim    before the batch: a row `claimed` for CLAIM_TTL_MS. A row of another
 *            node still claimed → wait for it (BUSY_WAIT_MS), then `busy` (451
 *            4.4.0, the forwarder retries) if it is still claimed; a row
 *            `done` → `earlier` (250 already queued, with that node's queue id);
 *            an expired row (an old id, or a claim whose node died between its
 *            batch and its confirm) is taken over.
 *   confirm  after the batch, before the 250: the row `done` for the spool-id TTL.
 *   release  the batch failed: the claim is dropped, a retry may go anywhere.
 *
 * PostgreSQL down: claim answers `unavailable` and the node goes on with its
 * own memory only (it accepts; a retry through another node during the outage
 * may be queued twice, the price of accepting); confirm parks the id in the
 * node's LevelDB (`sidp!<scope>!<id>`) and it is written when PostgreSQL
 * answers (every FLUSH_INTERVAL_MS). A node that died between its batch and its
 * confirm writes the ids of its last RECONCILE_MS at start (`reconcile`), so a
 * retry that reaches another node after the claim expired still finds them.
 *
 * Round trips: claims and confirms of messages finishing at the same time go
 * out as one statement each (storage/postgres/group-statement.ts); a claim that
 * does not come back `new` (a retry) costs one more statement for its batch.
 *
 * Config: listener.spoolIdTtlSeconds; storage.postgres.*.
 * Side effects: PostgreSQL statements; LevelDB writes of parked ids; a timer.
 */
import { PostinoError } from './errors.js';
import type { Logger } from './log.js';
import { GroupStatement } from './storage/postgres/group-statement.js';
import { sharedQuery, type PgPool } from './storage/postgres/pool.js';
import type { Store } from './store.js';

/**
 * A claim lives this long: far longer than one enqueue batch (milliseconds, a
 * second or two for a large message on a loaded disk), short enough that the
 * other node can wait it out within one SMTP reply (BUSY_WAIT_MS).
 */
export const CLAIM_TTL_MS = 15_000;
/**
 * A retry that finds another node's claim waits for it (the end-of-DATA reply is
 * held; SMTP clients wait minutes for it, RFC 5321 4.5.3.2.6) until the claim is
 * done (250 already queued) or expired (taken over), rather than answering 451:
 * the forwarder would put the message back for its whole retry interval (300 s
 * by default) after a node died mid-write. Longer than CLAIM_TTL_MS, so `busy`
 * is left for a claim renewed meanwhile.
 */
const BUSY_WAIT_MS = CLAIM_TTL_MS + 5_000;
const BUSY_POLL_MS = 250;
/** At start, ids this node accepted within this long are written again (covers a crash between batch and confirm). */
const RECONCILE_MS = 10 * 60_000;
const FLUSH_INTERVAL_MS = 2_000;
const FLUSH_BATCH = 1_000;
const PARKED = 'sidp!';
/** Width of the expiry in SeenSpoolIds' `sidx!` keys (spool-id.ts). */
const EXPIRY_WIDTH = 15;

export type SpoolIdClaim = { kind: 'new' } | { kind: 'earlier'; queueId: string } | { kind: 'busy' } | { kind: 'unavailable' };

/** What the intake asks of a memory of spool ids shared between nodes. */
export interface SharedSpoolIds {
  claim(scope: string, spoolId: string, queueId: string): Promise<SpoolIdClaim>;
  /** Never throws: what cannot be written now is parked and written later. */
  confirm(scope: string, spoolId: string, queueId: string): Promise<void>;
  /** Never throws (best effort: an unreleased claim expires after CLAIM_TTL_MS). */
  release(scope: string, spoolId: string): Promise<void>;
}

interface ClaimRequest {
  scope: string;
  spoolId: string;
  queueId: string;
}
type DoneRow = { scope: string; spoolId: string; queueId: string; expires: number };
/** A claim answered, or `again`: its row expired and was swept between the batch's two statements. */
type ClaimAnswer = SpoolIdClaim | { kind: 'again' };

const keyOf = (r: { scope: string; spoolId: string }): string => `${r.scope}\n${r.spoolId}`;

export class PgSpoolIds implements SharedSpoolIds {
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | undefined;
  private readonly claims = new GroupStatement<ClaimRequest, ClaimAnswer>((reqs) => this.claimBatch(reqs));
  private readonly confirms = new GroupStatement<DoneRow, void>(async (rows) => {
    await this.upsertDone(rows);
    return rows.map(() => undefined);
  });

  constructor(
    private readonly pool: PgPool,
    private readonly store: Store,
    private readonly ttlMs: number,
    private readonly log?: Logger,
  ) {
    this.timer = setInterval(() => void this.flushParked().catch(() => undefined), FLUSH_INTERVAL_MS).unref();
  }

  async claim(scope: string, spoolId: string, queueId: string): Promise<SpoolIdClaim> {
    const until = Date.now() + BUSY_WAIT_MS;
    for (;;) {
      const c = await this.claimOnce(scope, spoolId, queueId);
      if (c.kind !== 'busy' || Date.now() >= until) return c;
      await new Promise((r) => setTimeout(r, BUSY_POLL_MS));
    }
  }

  private async claimOnce(scope: string, spoolId: string, queueId: string): Promise<SpoolIdClaim> {
    try {
      for (let i = 0; i < 10; i++) {
        const c = await this.claims.run({ scope, spoolId, queueId });
        if (c.kind !== 'again') return c;
      }
      return { kind: 'busy' };
    } catch (err) {
      if (err instanceof PostinoError && err.code === 'SHARED_STATE_UNAVAILABLE') {
        this.log?.warn({ event: 'spool-id-unshared', scope, spoolId, err: err.reason }, 'PostgreSQL unavailable: spool id checked on this node only');
        return { kind: 'unavailable' };
      }
      throw err;
    }
  }

  /**
   * One INSERT claims every id of the batch that is free or expired; the others (retries) are
   * read in a second statement. The same id twice in one batch (a retry racing its first try):
   * the first claims, the later ones are `busy` and poll, as they would one by one.
   */
  private async claimBatch(reqs: ClaimRequest[]): Promise<ClaimAnswer[]> {
    const first = new Map<string, number>();
    reqs.forEach((r, i) => first.has(keyOf(r)) || first.set(keyOf(r), i));
    const unique = [...first.values()].map((i) => reqs[i]!);
    const claimed = await sharedQuery<{ scope: string; spool_id: string }>(
      this.pool,
      'claiming spool ids',
      `INSERT INTO spool_ids (scope, spool_id, queue_id, state, expires)
       SELECT s, i, q, 'claimed', now() + $4 * interval '1 millisecond' FROM unnest($1::text[], $2::text[], $3::text[]) AS t(s, i, q)
       ON CONFLICT (scope, spool_id) DO UPDATE SET queue_id = EXCLUDED.queue_id, state = 'claimed', expires = EXCLUDED.expires
       WHERE spool_ids.expires < now()
       RETURNING scope, spool_id`,
      [unique.map((r) => r.scope), unique.map((r) => r.spoolId), unique.map((r) => r.queueId), CLAIM_TTL_MS],
    );
    const isNew = new Set(claimed.rows.map((r) => keyOf({ scope: r.scope, spoolId: r.spool_id })));
    const others = unique.filter((r) => !isNew.has(keyOf(r)));
    const held = new Map<string, { state: string; queue_id: string }>();
    if (others.length > 0) {
      const r = await sharedQuery<{ scope: string; spool_id: string; state: string; queue_id: string }>(
        this.pool,
        'reading spool ids',
        'SELECT scope, spool_id, state, queue_id FROM spool_ids WHERE scope = ANY($1::text[]) AND spool_id = ANY($2::text[])',
        [[...new Set(others.map((o) => o.scope))], others.map((o) => o.spoolId)],
      );
      for (const row of r.rows) held.set(keyOf({ scope: row.scope, spoolId: row.spool_id }), row);
    }
    return reqs.map((r, i): ClaimAnswer => {
      const k = keyOf(r);
      if (first.get(k) !== i) return { kind: 'busy' };
      if (isNew.has(k)) return { kind: 'new' };
      const row = held.get(k);
      if (!row) return { kind: 'again' };
      return row.state === 'done' ? { kind: 'earlier', queueId: row.queue_id } : { kind: 'busy' };
    });
  }

  /** Upserts in one statement; the last of several rows for one id wins (one command cannot update a row twice). */
  private async upsertDone(rows: readonly DoneRow[]): Promise<void> {
    if (rows.length === 0) return;
    const all = [...new Map(rows.map((r) => [keyOf(r), r])).values()];
    await sharedQuery(
      this.pool,
      'recording spool ids',
      `INSERT INTO spool_ids (scope, spool_id, queue_id, state, expires)
       SELECT s, i, q, 'done', e FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS t(s, i, q, e)
       ON CONFLICT (scope, spool_id) DO UPDATE SET queue_id = EXCLUDED.queue_id, state = 'done', expires = EXCLUDED.expires`,
      [all.map((r) => r.scope), all.map((r) => r.spoolId), all.map((r) => r.queueId), all.map((r) => new Date(r.expires))],
    );
  }

  async confirm(scope: string, spoolId: string, queueId: string): Promise<void> {
    const expires = Date.now() + this.ttlMs;
    try {
      await this.confirms.run({ scope, spoolId, queueId, expires });
    } catch (err) {
      this.log?.warn({ event: 'spool-id-parked', scope, spoolId, err: (err as Error).message }, 'spool id kept locally until PostgreSQL answers');
      await this.store.commit([{ type: 'put', key: `${PARKED}${scope}!${spoolId}`, value: Buffer.from(JSON.stringify({ queueId, expires })) }], { sync: false }).catch((e: unknown) => this.log?.error({ err: e }, 'spool id not parked'));
    }
  }

  async release(scope: string, spoolId: string): Promise<void> {
    await sharedQuery(this.pool, 'releasing a spool id', `DELETE FROM spool_ids WHERE scope = $1 AND spool_id = $2 AND state = 'claimed'`, [scope, spoolId]).catch(() => undefined);
  }

  /** Writes the parked ids (see the header); throws SHARED_STATE_UNAVAILABLE while PostgreSQL is away. */
  async flushParked(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = (async () => {
      for (let round = 0; round < 1_000_000; round++) {
        const batch = await this.store.db.iterator({ gte: PARKED, lt: `${PARKED}\uffff`, limit: FLUSH_BATCH }).all();
        if (batch.length === 0) return;
        await this.upsertDone(
          batch.map(([k, v]) => {
            const rest = k.slice(PARKED.length);
            const bang = rest.lastIndexOf('!');
            const { queueId, expires } = JSON.parse(v.toString('utf8')) as { queueId: string; expires: number };
            return { scope: rest.slice(0, bang), spoolId: rest.slice(bang + 1), queueId, expires };
          }),
        );
        await this.store.commit(batch.map(([k]) => ({ type: 'del', key: k })), { sync: false });
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /**
   * At start: the ids this node accepted in the last RECONCILE_MS, from its own memory
   * (`sid!`/`sidx!` keys of spool-id.ts), written as done. Returns how many.
   */
  async reconcile(now = Date.now()): Promise<number> {
    const from = String(Math.floor(now + this.ttlMs - RECONCILE_MS)).padStart(EXPIRY_WIDTH, '0');
    const rows: DoneRow[] = [];
    for await (const key of this.store.db.keys({ gte: `sidx!${from}`, lt: 'sidx!~' })) {
      const k = key.slice(5 + EXPIRY_WIDTH + 1);
      const v = await this.store.db.get(`sid!${k}`);
      if (!v) continue;
      const { queueId, expires } = JSON.parse(v.toString('utf8')) as { queueId: string; expires: number };
      const bang = k.lastIndexOf('!');
      rows.push({ scope: k.slice(0, bang), spoolId: k.slice(bang + 1), queueId, expires });
    }
    for (let i = 0; i < rows.length; i += FLUSH_BATCH) await this.upsertDone(rows.slice(i, i + FLUSH_BATCH));
    return rows.length;
  }

  /** Forgets ids past their TTL (and claims long dead); returns how many. */
  async sweep(): Promise<number> {
    const r = await sharedQuery(this.pool, 'sweeping spool ids', 'DELETE FROM spool_ids WHERE expires < now()');
    return r.rowCount ?? 0;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing?.catch(() => undefined);
  }
}
