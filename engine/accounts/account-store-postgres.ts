/*
 * account-store-postgres.ts — the accounts API's changes in PostgreSQL
 * (storage.postgres): table account_overlays (one row per account: its
 * overlay, overlay.ts) and account_history (every node's account.changed
 * events), the same for every node, so an SMTP AUTH user, a network, a sender
 * domain or a quota set through node A's API holds on node B too.
 *
 * How another node's change arrives: each node re-reads the (small) overlay
 * table every 500 ms (common/storage/postgres/polled-table.ts, which says why
 * a poll and not LISTEN/NOTIFY) and hands a changed set to AccountService,
 * which swaps the accounts as after its own change (AccountsSnapshot.onSwap:
 * listener, rewrap settings, API keys).
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
import { PolledTable, POLL_MS } from '../../common/storage/postgres/polled-table.js';
import { sharedQuery, sharedTransaction, type PgPool } from '../../common/storage/postgres/pool.js';
import type { EventLog } from '../events/event-log.js';
import { HISTORY_PREFIX, historyKey, OVERLAY_PREFIX, readOverlayKeys, StaleOverlay, type AccountStore, type AccountWrite } from './account-store.js';
import type { AccountOverlay } from './overlay.js';

export { POLL_MS };

type Overlays = Map<string, AccountOverlay>;

export class PgAccountStore implements AccountStore {
  private readonly table: PolledTable<Overlays>;

  constructor(
    private readonly pool: PgPool,
    private readonly store: Store,
    private readonly events: EventLog,
    log: Logger,
    pollMs: number = POLL_MS,
  ) {
    this.table = new PolledTable<Overlays>(
      {
        what: 'account overlays',
        event: 'account-state',
        meanwhile: 'serving the accounts API changes last seen',
        read: async () => {
          const r = await sharedQuery<{ account: string; overlay: AccountOverlay }>(this.pool, 'account overlays', 'SELECT account, overlay FROM account_overlays');
          return new Map(r.rows.map((row) => [row.account, row.overlay]));
        },
        readLocal: () => readOverlayKeys(store),
        copy: (all) => new Map([...all].map(([a, o]) => [OVERLAY_PREFIX + a, Buffer.from(JSON.stringify(o))])),
        adopt: (local) => this.adopt(local),
        adoptedKey: 'pgacct!adopted',
      },
      store,
      log,
      pollMs,
    );
  }

  /** A node that ran on LevelDB before storage.postgres was set: its overlays and history go to PostgreSQL once (a row already there wins). */
  private async adopt(local: Overlays): Promise<void> {
    const history: PostinoEvent[] = [];
    for await (const v of this.store.db.values({ gte: HISTORY_PREFIX, lt: `${HISTORY_PREFIX}~` })) history.push(JSON.parse(v.toString('utf8')) as PostinoEvent);
    history.sort((a, b) => a.seq - b.seq);
    await sharedTransaction(this.pool, 'adopting account overlays', async (c) => {
      for (const [account, overlay] of local) await c.query('INSERT INTO account_overlays (account, overlay) VALUES ($1, $2) ON CONFLICT (account) DO NOTHING', [account, JSON.stringify(overlay)]);
      if (history.length) await c.query('INSERT INTO account_history (account, event) SELECT * FROM unnest($1::text[], $2::jsonb[])', [history.map((e) => e.account), history.map((e) => JSON.stringify(e))]);
    });
  }

  overlays(): Promise<Overlays> {
    return this.table.load();
  }

  async write(writes: AccountWrite[]): Promise<PostinoEvent[]> {
    return this.table.write(async () => {
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
    });
  }

  async history(account: string, limit: number): Promise<PostinoEvent[]> {
    const r = await sharedQuery<{ event: PostinoEvent }>(this.pool, 'account history', 'SELECT event FROM account_history WHERE account = $1 ORDER BY id DESC LIMIT $2', [account, limit]);
    return r.rows.map((row) => row.event);
  }

  watch(fn: (all: Overlays) => void): void {
    this.table.watch(fn);
  }

  close(): Promise<void> {
    return this.table.close();
  }
}
