/*
 * account-store-postgres.ts — the accounts API's changes in PostgreSQL
 * (storage.postgres): table account_overlays (one row per account: its
 * overlay, overlay.ts) and account_history (every node's account.changed
 * events), the same for every node, so an SMTP AUTH user, a network, a sender
 * domain or a quota set through node A's API holds on node B too.
 *
 * How another node's change arrives: each node re-reads the (small) overlay
 * table every POLL_MS (500 ms, so within ~1 s everywhere) and hands a changed
 * set to AccountService, which swaps the accounts as after its own change
 * (AccountsSnapshot.onSwap: listener, rewrap settings, API keys). A poll
 * rather than LISTEN/NOTIFY for the reason engine/delivery/pause-store-postgres.ts
 * gives: a notification missed while a connection was down is lost for good.
 *
 * Two nodes changing one account at once: the write locks the account's row
 * and goes through only if the row is still the overlay the change was made
 * from (AccountWrite.basedOn, compared as jsonb); otherwise StaleOverlay, and
 * the service makes the change again from the current overlay. Neither node's
 * change is lost, whatever their poll phase.
 *
 * The event: the overlay and the history row commit in one PostgreSQL
 * transaction; the account.changed event then goes into the node's own log
 * (which ships it to the global feed) in one synced LevelDB batch with the
 * node's copies. PostgreSQL unavailable: the change throws
 * SHARED_STATE_UNAVAILABLE (HTTP 503), no event is written and nothing
 * changes; each node keeps serving the accounts it last read. That set is
 * also kept in the node's LevelDB under the single node's `acct!o!` keys, so
 * a node restarting while PostgreSQL is down starts with it, not with the
 * bare file. The first start with PostgreSQL writes the overlays and history
 * the node had on LevelDB to the tables (a row already there wins).
 *
 * Side effects: PostgreSQL reads and writes; a timer; LevelDB writes (the copy).
 */
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { BatchOp, Store } from '../../common/store.js';
import { sharedQuery, sharedTransaction, type PgPool } from '../../common/storage/postgres/pool.js';
import type { EventLog } from '../events/event-log.js';
import { HISTORY_PREFIX, historyKey, OVERLAY_PREFIX, readOverlayKeys, StaleOverlay, type AccountStore, type AccountWrite } from './account-store.js';
import { overlaysFingerprint, type AccountOverlay } from './overlay.js';

/** How often a node re-reads the overlays: the "within ~1 s" with room for a slow query. */
export const POLL_MS = 500;

type Overlays = Map<string, AccountOverlay>;

/** Set once this node's LevelDB overlays were written to PostgreSQL (adoptLocal); outside `acct!`. */
const ADOPTED = 'pgacct!adopted';

export class PgAccountStore implements AccountStore {
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  /** Bumped before and after every local write: a poll that overlapped one may have read the old set and is dropped. */
  private writes = 0;
  private known = '';
  private failing = false;
  private closed = false;

  constructor(
    private readonly pool: PgPool,
    private readonly store: Store,
    private readonly events: EventLog,
    private readonly log: Logger,
    private readonly pollMs: number = POLL_MS,
  ) {}

  private async read(): Promise<Overlays> {
    const r = await sharedQuery<{ account: string; overlay: AccountOverlay }>(this.pool, 'account overlays', 'SELECT account, overlay FROM account_overlays');
    return new Map(r.rows.map((row) => [row.account, row.overlay]));
  }

  /** The node's copy of the last set PostgreSQL gave (see the header). */
  private async keep(all: Overlays): Promise<void> {
    const fp = overlaysFingerprint(all);
    if (fp === this.known) return;
    const old = await readOverlayKeys(this.store);
    const ops: BatchOp[] = [...old.keys()].filter((a) => !all.has(a)).map((a) => ({ type: 'del', key: OVERLAY_PREFIX + a }));
    for (const [a, o] of all) ops.push({ type: 'put', key: OVERLAY_PREFIX + a, value: Buffer.from(JSON.stringify(o)) });
    await this.store.commit(ops, { sync: true });
    this.known = fp;
  }

  /** A node that ran on LevelDB before storage.postgres was set: its changes go to PostgreSQL once (a row already there wins). */
  private async adoptLocal(): Promise<void> {
    if ((await this.store.db.get(ADOPTED)) !== undefined) return;
    const local = await readOverlayKeys(this.store);
    const history: PostinoEvent[] = [];
    for await (const v of this.store.db.values({ gte: HISTORY_PREFIX, lt: `${HISTORY_PREFIX}~` })) history.push(JSON.parse(v.toString('utf8')) as PostinoEvent);
    history.sort((a, b) => a.seq - b.seq);
    await sharedTransaction(this.pool, 'adopting account overlays', async (c) => {
      for (const [account, overlay] of local) await c.query('INSERT INTO account_overlays (account, overlay) VALUES ($1, $2) ON CONFLICT (account) DO NOTHING', [account, JSON.stringify(overlay)]);
      if (history.length) await c.query('INSERT INTO account_history (account, event) SELECT * FROM unnest($1::text[], $2::jsonb[])', [history.map((e) => e.account), history.map((e) => JSON.stringify(e))]);
    });
    await this.store.commit([{ type: 'put', key: ADOPTED, value: Buffer.from(new Date().toISOString()) }], { sync: true });
    if (local.size) this.log.info({ event: 'account-overlays-adopted', accounts: [...local.keys()], history: history.length }, "this node's accounts API changes written to PostgreSQL");
  }

  async overlays(): Promise<Overlays> {
    try {
      await this.adoptLocal();
      const all = await this.read();
      await this.keep(all);
      return all;
    } catch (err) {
      const last = await readOverlayKeys(this.store);
      this.known = overlaysFingerprint(last);
      this.failing = true;
      this.log.warn({ event: 'account-state-unavailable', err: { message: (err as Error).message }, accounts: [...last.keys()] }, 'PostgreSQL does not answer: serving the accounts API changes last seen until it does');
      return last;
    }
  }

  async write(writes: AccountWrite[]): Promise<PostinoEvent[]> {
    this.writes++;
    try {
      const done = await this.events.commitWith(
        writes.map((w) => w.audit),
        async (eventOps) => {
          const events = eventOps.filter((op) => op.type === 'put').map((op) => JSON.parse(Buffer.from(op.value).toString('utf8')) as PostinoEvent);
          const stale = await sharedTransaction(this.pool, 'accounts change', async (c) => {
            for (const w of writes) {
              if (!w.overlay) continue;
              // The row exists before it is locked, so two nodes' first change to an account serialise too.
              await c.query(`INSERT INTO account_overlays (account, overlay) VALUES ($1, '{}') ON CONFLICT (account) DO NOTHING`, [w.account]);
              const r = await c.query<{ same: boolean; overlay: AccountOverlay }>('SELECT overlay = $2::jsonb AS same, overlay FROM account_overlays WHERE account = $1 FOR UPDATE', [w.account, JSON.stringify(w.basedOn ?? {})]);
              if (!r.rows[0]!.same) return new StaleOverlay(w.account, r.rows[0]!.overlay);
              await c.query('UPDATE account_overlays SET overlay = $2, changed_at = now() WHERE account = $1', [w.account, JSON.stringify(w.overlay)]);
            }
            if (events.length) await c.query('INSERT INTO account_history (account, event) SELECT * FROM unnest($1::text[], $2::jsonb[])', [events.map((e) => e.account), events.map((e) => JSON.stringify(e))]);
            return undefined;
          });
          if (stale) throw stale; // the transaction changed nothing but the empty row; no event
          const ops: BatchOp[] = [...eventOps];
          for (const w of writes) if (w.overlay) ops.push({ type: 'put', key: OVERLAY_PREFIX + w.account, value: Buffer.from(JSON.stringify(w.overlay)) });
          for (const e of events) ops.push({ type: 'put', key: historyKey(e), value: Buffer.from(JSON.stringify(e)) });
          await this.store.commit(ops, { sync: true });
        },
      );
      return done ?? [];
    } finally {
      this.writes++;
    }
  }

  async history(account: string, limit: number): Promise<PostinoEvent[]> {
    const r = await sharedQuery<{ event: PostinoEvent }>(this.pool, 'account history', 'SELECT event FROM account_history WHERE account = $1 ORDER BY id DESC LIMIT $2', [account, limit]);
    return r.rows.map((row) => row.event);
  }

  watch(fn: (all: Overlays) => void): void {
    const tick = async (): Promise<void> => {
      const before = this.writes;
      let all: Overlays;
      try {
        all = await this.read();
      } catch (err) {
        if (!this.failing) this.log.warn({ event: 'account-state-unavailable', err: { message: (err as Error).message } }, 'PostgreSQL does not answer: serving the accounts API changes last seen until it does');
        this.failing = true;
        return;
      }
      if (this.failing) this.log.info({ event: 'account-state-available' }, 'account overlays read from PostgreSQL again');
      this.failing = false;
      if (before !== this.writes) return; // overlapped a local change: the next poll reads its result
      fn(all);
      await this.keep(all).catch((err: unknown) => this.log.warn({ err }, 'account overlays not copied to LevelDB'));
    };
    // One poll at a time, the next one POLL_MS after the last answered: a slow PostgreSQL must not pile them up.
    const next = (): void => {
      if (this.closed) return;
      this.timer = setTimeout(() => {
        this.polling = tick()
          .catch((err: unknown) => this.log.error({ err }, 'account overlay poll failed'))
          .finally(next);
      }, this.pollMs).unref();
    };
    next();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.polling;
  }
}
