/*
 * webhook-endpoints-postgres.ts — the endpoints added through POST
 * /api/webhooks in PostgreSQL (storage.postgres): one row of table
 * webhook_endpoints per endpoint (account, id → the Endpoint with its secret),
 * so an endpoint added through node A receives node B's events too, and one
 * deleted through either node stops on all. Each node still posts only the
 * events it shipped, from its own outbox (webhooks.ts).
 *
 * How another node's change arrives: each node re-reads the (small) table
 * every 500 ms (common/storage/postgres/polled-table.ts, which says why a
 * poll and not LISTEN/NOTIFY). An
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
import type { Store } from '../../common/store.js';
import { PolledTable, POLL_MS } from '../../common/storage/postgres/polled-table.js';
import { sharedQuery, type PgPool } from '../../common/storage/postgres/pool.js';
import { endpointKey, readEndpointKeys, type WebhookEndpointStore } from './webhook-endpoints.js';
import type { Endpoint } from './webhooks.js';

export { POLL_MS };

export class PgWebhookEndpoints implements WebhookEndpointStore {
  private readonly table: PolledTable<Endpoint[]>;

  constructor(
    private readonly pool: PgPool,
    private readonly store: Store,
    log: Logger,
    pollMs: number = POLL_MS,
  ) {
    this.table = new PolledTable<Endpoint[]>(
      {
        what: 'webhook endpoints',
        event: 'webhook-state',
        meanwhile: 'posting to the webhook endpoints last seen',
        read: async () => {
          const r = await sharedQuery<{ endpoint: Endpoint }>(this.pool, 'webhook endpoints', 'SELECT endpoint FROM webhook_endpoints ORDER BY account, id');
          return r.rows.map((row) => ({ ...row.endpoint, source: 'api' as const }));
        },
        readLocal: () => readEndpointKeys(store),
        copy: (all) => new Map(all.map((e) => [endpointKey(e.account, e.id), Buffer.from(JSON.stringify(e))])),
        adopt: async (local) => {
          for (const e of local) await this.insert(e, 'ON CONFLICT (account, id) DO NOTHING');
        },
        adoptedKey: 'pgwh!adopted',
      },
      store,
      log,
      pollMs,
    );
  }

  private insert(e: Endpoint, conflict = ''): Promise<unknown> {
    return sharedQuery(this.pool, 'adding a webhook endpoint', `INSERT INTO webhook_endpoints (account, id, endpoint) VALUES ($1, $2, $3) ${conflict}`, [e.account, e.id, JSON.stringify(e)]);
  }

  load(): Promise<Endpoint[]> {
    return this.table.load();
  }

  /** PostgreSQL first (a failure changes nothing), then the node's copy. */
  async add(ep: Endpoint): Promise<void> {
    await this.table.write(async () => {
      await this.insert(ep);
      await this.store.commit([{ type: 'put', key: endpointKey(ep.account, ep.id), value: Buffer.from(JSON.stringify(ep)) }], { sync: true });
    });
  }

  async remove(account: string, id: string): Promise<void> {
    await this.table.write(async () => {
      await sharedQuery(this.pool, 'removing a webhook endpoint', 'DELETE FROM webhook_endpoints WHERE account = $1 AND id = $2', [account, id]);
      await this.store.commit([{ type: 'del', key: endpointKey(account, id) }], { sync: true });
    });
  }

  watch(fn: (all: Endpoint[]) => void): void {
    this.table.watch(fn);
  }

  close(): Promise<void> {
    return this.table.close();
  }
}
