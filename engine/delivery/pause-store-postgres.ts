/*
 * pause-store-postgres.ts — the delivery kill-switch in PostgreSQL
 * (storage.postgres): one row of table delivery_pauses per switch that is on
 * (scope '*' or an account id → its PauseDetail), the same for every node, so
 * a pause made through node A's API or dashboard stops delivery on node B and
 * a resume through either node resumes both.
 *
 * How another node's change arrives: each node polls the (tiny) table every
 * 500 ms (common/storage/postgres/polled-table.ts, which says why a poll and
 * not LISTEN/NOTIFY). Its cost is one scan of a table with one row per paused
 * account, twice a second per node.
 *
 * PostgreSQL unavailable (fail safe): a pause or resume through the API
 * throws SHARED_STATE_UNAVAILABLE (HTTP 503) and changes nothing; the poll
 * keeps the last known set, so a paused account stays paused (and an account
 * paused elsewhere meanwhile is held as soon as the poll answers again; until
 * then its mail is held anyway by the suppression check, which defers every
 * message while PostgreSQL does not answer: engine/suppression-postgres.ts).
 * The last known set is also copied to the node's LevelDB under the same
 * `pause!` keys as a single node's, so a node that restarts while PostgreSQL
 * is down starts with the pauses it last saw, not with none. The first start
 * with PostgreSQL writes the pauses the node had on LevelDB to the table.
 *
 * Side effects: PostgreSQL reads and writes; a timer; LevelDB writes (the copy).
 */
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import { PolledTable, POLL_MS } from '../../common/storage/postgres/polled-table.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import { pauseKey, readPauseKeys, type PauseDetail, type PauseStore } from './pause-store.js';

export { POLL_MS };

type Switches = Map<string, PauseDetail>;

export class PgPauseStore implements PauseStore {
  private readonly table: PolledTable<Switches>;

  constructor(
    private readonly pool: PgPool,
    store: Store,
    log: Logger,
    pollMs: number = POLL_MS,
  ) {
    this.table = new PolledTable<Switches>(
      {
        what: 'delivery pauses',
        event: 'pause-state',
        meanwhile: 'the delivery pauses last seen hold',
        read: async () => {
          const r = await sharedQuery<{ scope: string; detail: PauseDetail }>(this.pool, 'delivery pauses', 'SELECT scope, detail FROM delivery_pauses');
          return new Map(r.rows.map((row) => [row.scope, row.detail]));
        },
        readLocal: () => readPauseKeys(store),
        copy: (all) => new Map([...all].map(([scope, d]) => [pauseKey(scope), Buffer.from(JSON.stringify(d))])),
        // A switch already there wins: turning on the shared backend never resumes a paused account.
        adopt: async (local) => {
          for (const [scope, detail] of local) await sharedQuery(this.pool, 'pause', 'INSERT INTO delivery_pauses (scope, detail) VALUES ($1, $2) ON CONFLICT (scope) DO NOTHING', [scope, JSON.stringify(detail)]);
        },
        adoptedKey: 'pgpause!adopted',
      },
      store,
      log,
      pollMs,
    );
  }

  load(): Promise<Switches> {
    return this.table.load();
  }

  async put(scope: string, detail: PauseDetail): Promise<void> {
    await this.table.write(() =>
      sharedQuery(this.pool, 'pause', 'INSERT INTO delivery_pauses (scope, detail) VALUES ($1, $2) ON CONFLICT (scope) DO UPDATE SET detail = excluded.detail', [scope, JSON.stringify(detail)]),
    );
  }

  async del(scope: string): Promise<void> {
    await this.table.write(() => sharedQuery(this.pool, 'resume', 'DELETE FROM delivery_pauses WHERE scope = $1', [scope]));
  }

  watch(fn: (all: Switches) => void): void {
    this.table.watch(fn);
  }

  close(): Promise<void> {
    return this.table.close();
  }
}
