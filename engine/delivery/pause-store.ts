/*
 * pause-store.ts — where the delivery kill-switch (delivery-pause.ts) keeps
 * which switches are on, behind one small interface with two backends chosen
 * by app/shared-state.ts: this node's LevelDB (here; a single node) or
 * PostgreSQL (pause-store-postgres.ts; every node sees the same switches).
 *
 * A switch is named by its scope: '*' for the global pause, else an account id
 * (account ids cannot contain '*': common/config.ts). LevelDB keys, unchanged:
 * `pause!*` (global) and `pause!a!<account>`, each → the PauseDetail as JSON,
 * written synced.
 *
 * Side effects: LevelDB reads and synced writes.
 */
import type { Store } from '../../common/store.js';

/** Why a switch is on: set by whoever turned it on (API key, dashboard login, reputation brake). */
export interface PauseDetail {
  at: string;
  reason?: string | undefined;
  by?: string | undefined;
}

export const GLOBAL_SCOPE = '*';

export interface PauseStore {
  /** Every switch that is on, by scope (at start). */
  load(): Promise<Map<string, PauseDetail>>;
  /** Turns one switch on; throws (503) when it cannot be kept. */
  put(scope: string, detail: PauseDetail): Promise<void>;
  /** Turns one switch off; throws (503) when it cannot be kept. */
  del(scope: string): Promise<void>;
  /** Switches changed by another node, as the whole new set; absent on a single node. */
  watch?(fn: (all: Map<string, PauseDetail>) => void): void;
  close(): Promise<void>;
}

const PREFIX = 'pause!';
const GLOBAL_KEY = 'pause!*';
const ACCOUNT = 'pause!a!';

export function pauseKey(scope: string): string {
  return scope === GLOBAL_SCOPE ? GLOBAL_KEY : ACCOUNT + scope;
}

/** The switches under `pause!` in a LevelDB store (also PostgreSQL's last-known copy on the node). */
export async function readPauseKeys(store: Store): Promise<Map<string, PauseDetail>> {
  const out = new Map<string, PauseDetail>();
  for await (const [key, value] of store.db.iterator({ gte: PREFIX, lt: 'pause~' })) {
    const scope = key === GLOBAL_KEY ? GLOBAL_SCOPE : key.startsWith(ACCOUNT) ? key.slice(ACCOUNT.length) : undefined;
    if (scope !== undefined) out.set(scope, JSON.parse(value.toString('utf8')) as PauseDetail);
  }
  return out;
}

export class LevelPauseStore implements PauseStore {
  constructor(private readonly store: Store) {}

  load(): Promise<Map<string, PauseDetail>> {
    return readPauseKeys(this.store);
  }

  async put(scope: string, detail: PauseDetail): Promise<void> {
    await this.store.commit([{ type: 'put', key: pauseKey(scope), value: Buffer.from(JSON.stringify(detail)) }], { sync: true });
  }

  async del(scope: string): Promise<void> {
    await this.store.commit([{ type: 'del', key: pauseKey(scope) }], { sync: true });
  }

  async close(): Promise<void> {}
}
