/*
 * polled-table.ts — a small PostgreSQL table every node follows by polling
 * (storage.postgres): the delivery pauses, the accounts API's overlays, the
 * webhook endpoints added through the API. One mechanism for all three:
 *
 *   - each node re-reads the table every pollMs (500 ms: "within ~1 s" on every
 *     node, with room for a slow query), one poll at a time, the next one
 *     pollMs after the last answered, so a slow PostgreSQL never piles them up.
 *     A poll rather than LISTEN/NOTIFY: a notification sent while a node's
 *     listening connection is down (restart, failover) is lost, so a node would
 *     have to re-read after every reconnect anyway; the poll is that re-read on
 *     a fixed beat, through the ordinary pool;
 *   - a poll that overlapped a write of this node (`write`) is dropped: it may
 *     have read the table from before the write, and would undo it for a moment;
 *   - the last set PostgreSQL gave is copied into the node's LevelDB (under the
 *     single-node backend's own keys), so a node restarting while PostgreSQL is
 *     down serves what it last knew; `load` falls back to that copy;
 *   - a node that ran on LevelDB before storage.postgres was set writes what it
 *     had to PostgreSQL once (`adopt`; a row already there wins), marked by a
 *     key of its own so it happens once.
 *
 * Side effects: PostgreSQL reads (and what `adopt` writes); a timer; LevelDB
 * writes of the copy.
 */
import type { Logger } from '../../log.js';
import type { BatchOp, Store } from '../../store.js';

/** How often a node re-reads a polled table (see the header). */
export const POLL_MS = 500;

export interface PolledTableSpec<T> {
  /** For logs: "delivery pauses", "account overlays", "webhook endpoints". */
  what: string;
  /** Log event prefix: `<event>-unavailable`, `<event>-available`. */
  event: string;
  /** What the node does meanwhile, for the log line when PostgreSQL does not answer. */
  meanwhile: string;
  /** The whole table, from PostgreSQL. */
  read(): Promise<T>;
  /** The node's copy (the single-node backend's keys). */
  readLocal(): Promise<T>;
  /** A set as the LevelDB keys and values of its copy. */
  copy(all: T): Map<string, Buffer>;
  /** Once, on a node's first start with PostgreSQL: what it had on LevelDB, written to the table (a row already there wins). */
  adopt(local: T): Promise<void>;
  /** The LevelDB key that says `adopt` was done (outside the copy's keys). */
  adoptedKey: string;
}

export class PolledTable<T> {
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  /** Bumped before and after every local write: a poll that overlapped one may have read the old set and is dropped. */
  private writes = 0;
  private known = '';
  private failing = false;
  private closed = false;

  constructor(
    private readonly spec: PolledTableSpec<T>,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly pollMs: number = POLL_MS,
  ) {}

  private fingerprint(copy: Map<string, Buffer>): string {
    return JSON.stringify([...copy].map(([k, v]) => [k, v.toString('base64')]).sort(([a], [b]) => (a! < b! ? -1 : a! > b! ? 1 : 0)));
  }

  /** The node's copy of the last set PostgreSQL gave. */
  private async keep(all: T): Promise<void> {
    const next = this.spec.copy(all);
    const fp = this.fingerprint(next);
    if (fp === this.known) return;
    const old = this.spec.copy(await this.spec.readLocal());
    const ops: BatchOp[] = [...old.keys()].filter((k) => !next.has(k)).map((key) => ({ type: 'del', key }));
    for (const [key, value] of next) ops.push({ type: 'put', key, value });
    await this.store.commit(ops, { sync: true });
    this.known = fp;
  }

  private unavailable(err: unknown, extra: Record<string, unknown> = {}): void {
    this.log.warn({ event: `${this.spec.event}-unavailable`, err: { message: (err as Error).message }, ...extra }, `PostgreSQL does not answer: ${this.spec.meanwhile} until it does`);
  }

  /** At start: the table (after adopting this node's LevelDB set once), or the node's copy while PostgreSQL does not answer. */
  async load(): Promise<T> {
    try {
      if ((await this.store.db.get(this.spec.adoptedKey)) === undefined) {
        const local = await this.spec.readLocal();
        await this.spec.adopt(local);
        await this.store.commit([{ type: 'put', key: this.spec.adoptedKey, value: Buffer.from(new Date().toISOString()) }], { sync: true });
        if (this.spec.copy(local).size) this.log.info({ event: `${this.spec.event}-adopted` }, `this node's ${this.spec.what} written to PostgreSQL`);
      }
      const all = await this.spec.read();
      await this.keep(all);
      return all;
    } catch (err) {
      const last = await this.spec.readLocal();
      this.known = this.fingerprint(this.spec.copy(last));
      this.failing = true;
      this.unavailable(err, { kept: this.spec.copy(last).size });
      return last;
    }
  }

  /** A write of this node to the table: polls overlapping it are dropped (see the header). */
  async write<R>(fn: () => Promise<R>): Promise<R> {
    this.writes++;
    try {
      const r = await fn();
      this.known = ''; // the copy is rewritten from the next poll
      return r;
    } finally {
      this.writes++;
    }
  }

  /** Calls fn with the whole table after every poll that was not overlapped by a write of this node. */
  watch(fn: (all: T) => void): void {
    const tick = async (): Promise<void> => {
      const before = this.writes;
      let all: T;
      try {
        all = await this.spec.read();
      } catch (err) {
        if (!this.failing) this.unavailable(err);
        this.failing = true;
        return;
      }
      if (this.failing) this.log.info({ event: `${this.spec.event}-available` }, `${this.spec.what} read from PostgreSQL again`);
      this.failing = false;
      if (before !== this.writes) return; // overlapped a local write: the next poll reads its result
      fn(all);
      await this.keep(all).catch((err: unknown) => this.log.warn({ err }, `${this.spec.what} not copied to LevelDB`));
    };
    const next = (): void => {
      if (this.closed) return;
      this.timer = setTimeout(() => {
        this.polling = tick()
          .catch((err: unknown) => this.log.error({ err }, `${this.spec.what} poll failed`))
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
