/*
 * accounts-snapshot.ts — the one in-process view of the effective accounts of
 * a hosted node (config file + accounts API overlays), swapped whole when they
 * change (engine/accounts/account-service.ts) and read by the listener (a
 * session keeps the view it connected under), the rewrap settings and the API
 * keys. Readers take `current` when they start a unit of work and never see a
 * half-applied change: a swap replaces one frozen array, and subscribers are
 * called synchronously, so no I/O runs between the swap and their update.
 *
 * Side effects: none.
 */
import type { Config } from './config.js';

/** The parsed, deep-frozen accounts array (the schema's type, so it passes where a Config's does). */
type Accounts = Config['accounts'];

export type AccountsListener = (accounts: Accounts) => void;

export class AccountsSnapshot {
  private accounts: Accounts;
  private readonly listeners: AccountsListener[] = [];
  /** Incremented by every swap (logs, tests). */
  version = 1;

  constructor(accounts: Accounts) {
    this.accounts = accounts;
  }

  get current(): Accounts {
    return this.accounts;
  }

  swap(next: Accounts): void {
    this.accounts = next;
    this.version++;
    for (const l of this.listeners) l(next);
  }

  onSwap(l: AccountsListener): void {
    this.listeners.push(l);
  }
}
