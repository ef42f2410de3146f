/*
 * webhook-endpoints-postgres.ts — the endpoints added through POST
 * /api/webhooks in PostgreSQL (storage.postgres): one row of table
 * webhook_endpoints per endpoint (account, id → the Endpoint with its secret),
 * so an endpoint added through node A receives node B's events too, and one
 * deleted through either node stops on all. Each node still posts only the
 * events it shipped, from its own outbox (webhooks.ts).
 *
 * How another node's change arrives: each node re-reads the (small) table
 * every POLL_MS (500 ms, so within ~1 s everywhere), for the reason
 * engine/delivery/pause-store-postgres.ts gives against LISTEN/NOTIFY. An
 * endpoint a node learns of starts at that node's current end of the feed,
 * like any new endpoint: events this node shipped in the moment between the
 * add on the other node and its poll are not posted.
 *
 * PostgreSQL unavailable: an add or delete throws SHARED_STATE_UNAVAILABLE
 * (HTTP 503) and changes nothing; each node keeps posting to the endpoints it
 * last read. That list is also kept in the node's LevelDB under the single
 * node's `wh!` keys, so a node restarting while PostgreSQL is down still
 * posts to them. The first start with PostgreSQL writes the endpoints the
 * node had on LevelDB to the table.
 *
 * Side effects: PostgreSQL reads and writes; a timer; LevelDB writes (the copy).
 */
import type { Logger } from '../../common/log.js';
import type { BatchOp, Store } from '../../common/store.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import { endpointKey, readEndpointKeys, type WebhookEndpointStore } from './webhook-endpoints.js';
import type { Endpoint } from './webhooks.js';

/** How often a node re-reads the endpoints: the "within ~1 s" with room for a slow query. */
export const POLL_MS = 500;

/** Set once this node's LevelDB endpoints were written to PostgreSQL (adoptLocal); outside `wh!`. */
const ADOPTED = 'pgwh!adopted';

function fingerprint(all: Endpoint[]): string {
  return JSON.stringify(all.map((e) => `${e.account}!${e.id}`).sort());
}

export class PgWebhookEndpoints implements WebhookEndpointStore {
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  /** Bumped before and after every local write: a poll that overlapped one may have read the old list and is dropped. */
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

  private async read(): Promise<Endpoint[]> {
    const r = await sharedQuery<{ endpoint: Endpoint }>(this.pool, 'webhook endpoints', 'SELECT endpoint FROM webhook_endpoints ORDER BY account, id');
    return r.rows.map((row) => ({ ...row.endpoint, source: 'api' as const }));
  }

  /** The node's copy of the last list PostgreSQL gave (see the header). */
  private async keep(all: Endpoint[]): Promise<void> {
    const fp = fingerprint(all);
    if (fp === this.known) return;
    const wanted = new Set(all.map((e) => endpointKey(e.account, e.id)));
    const old = await readEndpointKeys(this.store);
    const ops: BatchOp[] = old.map((e) => endpointKey(e.account, e.id)).filter((k) => !wanted.has(k)).map((key) => ({ type: 'del', key }));
    for (const e of all) ops.push({ type: 'put', key: endpointKey(e.account, e.id), value: Buffer.from(JSON.stringify(e)) });
    await this.store.commit(ops, { sync: true });
    this.known = fp;
  }

  private async adoptLocal(): Promise<void> {
    if ((await this.store.db.get(ADOPTED)) !== undefined) return;
    const local = await readEndpointKeys(this.store);
    for (const e of local) await this.insert(e, 'ON CONFLICT (account, id) DO NOTHING');
    await this.store.commit([{ type: 'put', key: ADOPTED, value: Buffer.from(new Date().toISOString()) }], { sync: true });
    if (local.length) this.log.info({ event: 'webhooks-adopted', endpoints: local.map((e) => `${e.account}/${e.id}`) }, "this node's API webhook endpoints written to PostgreSQL");
  }

  private insert(e: Endpoint, conflict = ''): Promise<unknown> {
    return sharedQuery(this.pool, 'adding a webhook endpoint', `INSERT INTO webhook_endpoints (account, id, endpoint) VALUES ($1, $2, $3) ${conflict}`, [e.account, e.id, JSON.stringify(e)]);
  }

  async load(): Promise<Endpoint[]> {
    try {
      await this.adoptLocal();
      const all = await this.read();
      await this.keep(all);
      return all;
    } catch (err) {
      const last = await readEndpointKeys(this.store);
      this.known = fingerprint(last);
      this.failing = true;
      this.log.warn({ event: 'webhook-state-unavailable', err: { message: (err as Error).message }, endpoints: last.length }, 'PostgreSQL does not answer: posting to the webhook endpoints last seen until it does');
      return last;
    }
  }

  async add(ep: Endpoint): Promise<void> {
    await this.write(() => this.insert(ep), [{ type: 'put', key: endpointKey(ep.account, ep.id), value: Buffer.from(JSON.stringify(ep)) }]);
  }

  async remove(account: string, id: string): Promise<void> {
    await this.write(() => sharedQuery(this.pool, 'removing a webhook endpoint', 'DELETE FROM webhook_endpoints WHERE account = $1 AND id = $2', [account, id]), [{ type: 'del', key: endpointKey(account, id) }]);
  }

  /** PostgreSQL first (a failure changes nothing), then the node's copy. */
  private async write(fn: () => Promise<unknown>, copy: BatchOp[]): Promise<void> {
    this.writes++;
    try {
      await fn();
      this.known = '';
      await this.store.commit(copy, { sync: true });
    } finally {
      this.writes++;
    }
  }

  watch(fn: (all: Endpoint[]) => void): void {
    const tick = async (): Promise<void> => {
      const before = this.writes;
      let all: Endpoint[];
      try {
        all = await this.read();
      } catch (err) {
        if (!this.failing) this.log.warn({ event: 'webhook-state-unavailable', err: { message: (err as Error).message } }, 'PostgreSQL does not answer: posting to the webhook endpoints last seen until it does');
        this.failing = true;
        return;
      }
      if (this.failing) this.log.info({ event: 'webhook-state-available' }, 'webhook endpoints read from PostgreSQL again');
      this.failing = false;
      if (before !== this.writes) return; // overlapped a local add or delete: the next poll reads its result
      fn(all);
      await this.keep(all).catch((err: unknown) => this.log.warn({ err }, 'webhook endpoints not copied to LevelDB'));
    };
    // One poll at a time, the next one POLL_MS after the last answered: a slow PostgreSQL must not pile them up.
    const next = (): void => {
      if (this.closed) return;
      this.timer = setTimeout(() => {
        this.polling = tick()
          .catch((err: unknown) => this.log.error({ err }, 'webhook endpoint poll failed'))
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
