/*
 * webhook-endpoints.ts — where the endpoints added through POST /api/webhooks
 * are kept, behind one small interface with two backends chosen by
 * app/shared-state.ts: this node's LevelDB (here; a single node) or
 * PostgreSQL (webhook-endpoints-postgres.ts; every node posts its own events
 * to the same endpoints). Only the list is shared: each node's outbox, cursor
 * and last deliveries stay in its own LevelDB (webhooks.ts).
 *
 * LevelDB keys, unchanged: `wh!<account>!<id>` → the Endpoint as JSON
 * ({url, types, secret, createdAt}), written synced.
 *
 * Side effects: LevelDB reads and synced writes.
 */
import type { Store } from '../../common/store.js';
import type { Endpoint } from './webhooks.js';

export interface WebhookEndpointStore {
  /** Every endpoint added through the API (at start). */
  load(): Promise<Endpoint[]>;
  /** Keeps a new endpoint; throws (503) when it cannot be kept. */
  add(ep: Endpoint): Promise<void>;
  /** Forgets one; throws (503) when it cannot be kept. */
  remove(account: string, id: string): Promise<void>;
  /** Endpoints added or removed by another node, as the whole new list; absent on a single node. */
  watch?(fn: (all: Endpoint[]) => void): void;
  close(): Promise<void>;
}

const PREFIX = 'wh!';

export function endpointKey(account: string, id: string): string {
  return `${PREFIX}${account}!${id}`;
}

/** The endpoints under `wh!` in a LevelDB store (also PostgreSQL's last-known copy on the node). */
export async function readEndpointKeys(store: Store): Promise<Endpoint[]> {
  const out: Endpoint[] = [];
  for await (const v of store.db.values({ gte: PREFIX, lt: 'wh~' })) out.push({ ...(JSON.parse(v.toString('utf8')) as Endpoint), source: 'api' });
  return out;
}

export class LevelWebhookEndpoints implements WebhookEndpointStore {
  constructor(private readonly store: Store) {}

  load(): Promise<Endpoint[]> {
    return readEndpointKeys(this.store);
  }

  async add(ep: Endpoint): Promise<void> {
    await this.store.commit([{ type: 'put', key: endpointKey(ep.account, ep.id), value: Buffer.from(JSON.stringify(ep)) }], { sync: true });
  }

  async remove(account: string, id: string): Promise<void> {
    await this.store.commit([{ type: 'del', key: endpointKey(account, id) }], { sync: true });
  }

  async close(): Promise<void> {}
}
