/*
 * delivery-pause.ts — the engine-side kill-switch: pause delivery globally or for
 * one account while intake keeps accepting (copies wait in the delivery queue).
 *
 * Where the switches are kept is a PauseStore (pause-store.ts): this node's
 * LevelDB (`pause!*`, `pause!a!<account>`, synced) or, with storage.postgres,
 * PostgreSQL for every node (pause-store-postgres.ts). Loaded at start, so a
 * pause survives a restart. The checks on the delivery path read the copy in
 * memory (no round trip per message); a switch turned by another node arrives
 * through the store's watch and is applied like a local one. A pause or
 * resume that cannot be kept throws (the API answers 503) and changes nothing.
 * Listeners are told of every change (the scheduler releases or resumes lanes).
 * Each pause records when, why and by whom (`details()`), for the dashboard and
 * the operator asking "who stopped the mail?".
 *
 * Side effects: writes through the PauseStore.
 */
import type { Store } from '../../common/store.js';
import { GLOBAL_SCOPE, LevelPauseStore, type PauseDetail, type PauseStore } from './pause-store.js';

export type { PauseDetail } from './pause-store.js';

export interface DeliveryPauseState {
  global: boolean;
  accounts: string[];
}

export interface PauseDetails {
  global: PauseDetail | null;
  accounts: Record<string, PauseDetail>;
}

export class DeliveryPause {
  private switches = new Map<string, PauseDetail>();
  private readonly listeners: Array<() => void> = [];

  private constructor(private readonly backend: PauseStore) {}

  /** The store's switches; `backend` defaults to the node's LevelDB (a single node). */
  static async open(store: Store, backend: PauseStore = new LevelPauseStore(store)): Promise<DeliveryPause> {
    const k = new DeliveryPause(backend);
    k.switches = await backend.load();
    backend.watch?.((all) => k.replace(all));
    return k;
  }

  isPaused(account?: string): boolean {
    return this.switches.has(GLOBAL_SCOPE) || (account !== undefined && this.switches.has(account));
  }

  get globalPaused(): boolean {
    return this.switches.has(GLOBAL_SCOPE);
  }

  state(): DeliveryPauseState {
    return { global: this.globalPaused, accounts: [...this.switches.keys()].filter((s) => s !== GLOBAL_SCOPE).sort() };
  }

  details(): PauseDetails {
    const accounts: Record<string, PauseDetail> = {};
    for (const a of this.state().accounts) accounts[a] = this.switches.get(a) ?? { at: '' };
    return { global: this.switches.get(GLOBAL_SCOPE) ?? null, accounts };
  }

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  async pause(account?: string, why: { reason?: string | undefined; by?: string | undefined } = {}): Promise<DeliveryPauseState> {
    const scope = account ?? GLOBAL_SCOPE;
    const detail: PauseDetail = { at: new Date().toISOString(), ...(why.reason ? { reason: why.reason } : {}), ...(why.by ? { by: why.by } : {}) };
    await this.backend.put(scope, detail);
    this.switches.set(scope, detail);
    this.changed();
    return this.state();
  }

  async resume(account?: string): Promise<DeliveryPauseState> {
    const scope = account ?? GLOBAL_SCOPE;
    await this.backend.del(scope);
    this.switches.delete(scope);
    this.changed();
    return this.state();
  }

  /** The whole set as another node left it (the store's watch); listeners only when something changed. */
  private replace(all: Map<string, PauseDetail>): void {
    const same = all.size === this.switches.size && [...all].every(([s, d]) => JSON.stringify(this.switches.get(s)) === JSON.stringify(d));
    if (same) return;
    this.switches = all;
    this.changed();
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Stops watching the store (the scheduler has stopped). */
  close(): Promise<void> {
    return this.backend.close();
  }
}
