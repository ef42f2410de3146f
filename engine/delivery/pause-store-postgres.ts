/*
 * pause-store-postgres.ts — the delivery kill-switch in PostgreSQL
 * (storage.postgres): one row of table delivery_pauses per switch that is on
 * (scope '*' or an account id → its PauseDetail), the same for every node, so
 * a pause made through node A's API or dashboard stops delivery on node B and
 * a resume through either node resumes both.
 *
 * How another node's change arrives: each node polls the (tiny) table every
 * POLL_MS (500 ms, so within ~1 s everywhere). Chosen over LISTEN/NOTIFY
 * because a notification sent while a node's listening connection was down
 * (PostgreSQL restart, failover, a network blip) is lost for good, so a node
 * would have to re-read the table after every reconnect anyway: the poll is
 * that re-read, on a fixed beat, through the ordinary pool, with no dedicated
 * connection per node to keep alive. Its cost is one primary-key scan of a
 * table with one row per paused account, twice a second per node.
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
import type { BatchOp, Store } from '../../common/store.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import { pauseKey, readPauseKeys, type PauseDetail, type PauseStore } from './pause-store.js';

/** How often a node re-reads the switches: the "within ~1 s" with room for a slow query. */
export const POLL_MS = 500;

type Switches = Map<string, PauseDetail>;

/** Set once this node's LevelDB pauses were written to PostgreSQL (adoptLocal); outside `pause!`, which holds only switches. */
const ADOPTED = 'pgpause!adopted';

function fingerprint(all: Switches): string {
  return JSON.stringify([...all].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export class PgPauseStore implements PauseStore {
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
    private readonly log: Logger,
    private readonly pollMs: number = POLL_MS,
  ) {}

  private async read(): Promise<Switches> {
    const r = await sharedQuery<{ scope: string; detail: PauseDetail }>(this.pool, 'delivery pauses', 'SELECT scope, detail FROM delivery_pauses');
    return new Map(r.rows.map((row) => [row.scope, row.detail]));
  }

  /** The node's copy of the last set PostgreSQL gave (see the header). */
  private async keep(all: Switches): Promise<void> {
    const fp = fingerprint(all);
    if (fp === this.known) return;
    this.known = fp;
    const old = await readPauseKeys(this.store);
    const ops: BatchOp[] = [...old.keys()].filter((s) => !all.has(s)).map((s) => ({ type: 'del', key: pauseKey(s) }));
    for (const [s, d] of all) ops.push({ type: 'put', key: pauseKey(s), value: Buffer.from(JSON.stringify(d)) });
    await this.store.commit(ops, { sync: true });
  }

  /**
   * A node that ran on LevelDB before storage.postgres was set: its pauses go to PostgreSQL once
   * (a switch already there wins), so turning on the shared backend never resumes a paused account.
   */
  private async adoptLocal(): Promise<void> {
    if ((await this.store.db.get(ADOPTED)) !== undefined) return;
    const local = await readPauseKeys(this.store);
    for (const [scope, detail] of local) {
      await sharedQuery(this.pool, 'pause', 'INSERT INTO delivery_pauses (scope, detail) VALUES ($1, $2) ON CONFLICT (scope) DO NOTHING', [scope, JSON.stringify(detail)]);
    }
    await this.store.commit([{ type: 'put', key: ADOPTED, value: Buffer.from(new Date().toISOString()) }], { sync: true });
    if (local.size) this.log.info({ event: 'pauses-adopted', scopes: [...local.keys()] }, "this node's delivery pauses written to PostgreSQL");
  }

  async load(): Promise<Switches> {
    try {
      await this.adoptLocal();
      const all = await this.read();
      await this.keep(all);
      return all;
    } catch (err) {
      const last = await readPauseKeys(this.store);
      this.known = fingerprint(last);
      this.failing = true;
      this.log.warn({ event: 'pause-state-unavailable', err: { message: (err as Error).message }, paused: [...last.keys()] }, 'PostgreSQL does not answer: the delivery pauses last seen hold until it does');
      return last;
    }
  }

  async put(scope: string, detail: PauseDetail): Promise<void> {
    await this.write(() =>
      sharedQuery(this.pool, 'pause', 'INSERT INTO delivery_pauses (scope, detail) VALUES ($1, $2) ON CONFLICT (scope) DO UPDATE SET detail = excluded.detail', [scope, JSON.stringify(detail)]),
    );
  }

  async del(scope: string): Promise<void> {
    await this.write(() => sharedQuery(this.pool, 'resume', 'DELETE FROM delivery_pauses WHERE scope = $1', [scope]));
  }

  private async write(fn: () => Promise<unknown>): Promise<void> {
    this.writes++;
    try {
      await fn();
    } finally {
      this.writes++;
    }
    // The copy follows at the next poll; a write that reached PostgreSQL is what counts.
  }

  watch(fn: (all: Switches) => void): void {
    const tick = async (): Promise<void> => {
      const before = this.writes;
      let all: Switches;
      try {
        all = await this.read();
      } catch (err) {
        if (!this.failing) this.log.warn({ event: 'pause-state-unavailable', err: { message: (err as Error).message } }, 'PostgreSQL does not answer: the delivery pauses last seen hold until it does');
        this.failing = true;
        return;
      }
      if (this.failing) this.log.info({ event: 'pause-state-available' }, 'delivery pauses read from PostgreSQL again');
      this.failing = false;
      if (before !== this.writes) return; // overlapped a local pause or resume: the next poll reads its result
      fn(all);
      await this.keep(all).catch((err: unknown) => this.log.warn({ err }, 'delivery pauses not copied to LevelDB'));
    };
    // One poll at a time, the next one POLL_MS after the last answered: a slow PostgreSQL must not pile them up.
    const next = (): void => {
      if (this.closed) return;
      this.timer = setTimeout(() => {
        this.polling = tick()
          .catch((err: unknown) => this.log.error({ err }, 'delivery pause poll failed'))
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
