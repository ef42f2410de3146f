/*
 * delivery-pause.ts — the engine-side kill-switch: pause delivery globally or for
 * one account while intake keeps accepting (copies wait in the delivery queue).
 *
 * State is persisted (synced) under `pause!*` (global) and `pause!a!<account>`
 * in the hosted LevelDB and loaded at start, so a pause survives a restart.
 * Listeners are told of every change (the scheduler releases or resumes lanes).
 * Each pause records when, why and by whom (`details()`), for the dashboard and
 * the operator asking "who stopped the mail?".
 *
 * Side effects: LevelDB writes.
 */
import type { Store } from '../../common/store.js';

export interface DeliveryPauseState {
  global: boolean;
  accounts: string[];
}

/** Why a switch is on: set by whoever turned it on (API key or dashboard login). */
export interface PauseDetail {
  at: string;
  reason?: string | undefined;
  by?: string | undefined;
}

export interface PauseDetails {
  global: PauseDetail | null;
  accounts: Record<string, PauseDetail>;
}

const GLOBAL = 'pause!*';
const ACCOUNT = 'pause!a!';

export class DeliveryPause {
  private global = false;
  private readonly accounts = new Set<string>();
  private readonly detail = new Map<string, PauseDetail>();
  private readonly listeners: Array<() => void> = [];

  private constructor(private readonly store: Store) {}

  static async open(store: Store): Promise<DeliveryPause> {
    const k = new DeliveryPause(store);
    for await (const [key, value] of store.db.iterator({ gte: 'pause!', lt: 'pause~' })) {
      if (key === GLOBAL) k.global = true;
      else if (key.startsWith(ACCOUNT)) k.accounts.add(key.slice(ACCOUNT.length));
      k.detail.set(key, JSON.parse(value.toString('utf8')) as PauseDetail);
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

  details(): PauseDetails {
    const accounts: Record<string, PauseDetail> = {};
    for (const a of this.accounts) accounts[a] = this.detail.get(ACCOUNT + a) ?? { at: '' };
    return { global: this.global ? (this.detail.get(GLOBAL) ?? { at: '' }) : null, accounts };
  }

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  async pause(account?: string, why: { reason?: string | undefined; by?: string | undefined } = {}): Promise<DeliveryPauseState> {
    const key = account === undefined ? GLOBAL : ACCOUNT + account;
    const detail: PauseDetail = { at: new Date().toISOString(), ...(why.reason ? { reason: why.reason } : {}), ...(why.by ? { by: why.by } : {}) };
    await this.store.commit([{ type: 'put', key, value: Buffer.from(JSON.stringify(detail)) }], { sync: true });
    this.detail.set(key, detail);
    if (account === undefined) this.global = true;
    else this.accounts.add(account);
    for (const l of this.listeners) l();
    return this.state();
  }

  async resume(account?: string): Promise<DeliveryPauseState> {
    const key = account === undefined ? GLOBAL : ACCOUNT + account;
    await this.store.commit([{ type: 'del', key }], { sync: true });
    this.detail.delete(key);
    if (account === undefined) this.global = false;
    else this.accounts.delete(account);
    for (const l of this.listeners) l();
    return this.state();
  }
}
