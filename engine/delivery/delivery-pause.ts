/*
 * delivery-pause.ts — the engine-side kill-switch: pause delivery globally or for
 * one account while intake keeps accepting (copies wait in the delivery queue).
 *
 * State is persisted (synced) under `pause!*` (global) and `pause!a!<account>`
 * in the hosted LevelDB and loaded at start, so a pause survives a restart.
 * Listeners are told of every change (the scheduler releases or resumes lanes).
 *
 * Side effects: LevelDB writes.
 */
import type { Store } from '../../common/store.js';

export interface DeliveryPauseState {
  global: boolean;
  accounts: string[];
}

const GLOBAL = 'pause!*';
const ACCOUNT = 'pause!a!';

export class DeliveryPause {
  private global = false;
  private readonly accounts = new Set<string>();
  private readonly listeners: Array<() => void> = [];

  private constructor(private readonly store: Store) {}

  static async open(store: Store): Promise<DeliveryPause> {
    const k = new DeliveryPause(store);
    for await (const key of store.db.keys({ gte: 'pause!', lt: 'pause~' })) {
      if (key === GLOBAL) k.global = true;
      else if (key.startsWith(ACCOUNT)) k.accounts.add(key.slice(ACCOUNT.length));
    }
    return k;
  }

  isPaused(account?: string): boolean {
    return this.global || (account !== undefined && this.accounts.has(account));
  }

  get globalPaused(): boolean {
    return this.global;
  }

  state(): DeliveryPauseState {
    return { global: this.global, accounts: [...this.accounts].sort() };
  }

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  async pause(account?: string): Promise<DeliveryPauseState> {
    const key = account === undefined ? GLOBAL : ACCOUNT + account;
    await this.store.commit([{ type: 'put', key, value: Buffer.from(JSON.stringify({ at: new Date().toISOString() })) }], { sync: true });
    if (account === undefined) this.global = true;
    else this.accounts.add(account);
    for (const l of this.listeners) l();
    return this.state();
  }

  async resume(account?: string): Promise<DeliveryPauseState> {
    const key = account === undefined ? GLOBAL : ACCOUNT + account;
    await this.store.commit([{ type: 'del', key }], { sync: true });
    if (account === undefined) this.global = false;
    else this.accounts.delete(account);
    for (const l of this.listeners) l();
    return this.state();
  }
}
