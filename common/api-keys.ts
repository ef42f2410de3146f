/*
 * api-keys.ts — who is calling the HTTP API: the node (the operator's key,
 * `http.apiKeyEnv` or <data>/secrets/api-key) or one account (a key listed in
 * `accounts[].apiKeys`, stored only as a scrypt hash like the SMTP passwords).
 *
 * An account key looks like `pk_<id>_<secret>`: the id names the config entry
 * to check, so a request costs at most one scrypt (tens of ms on libuv's pool,
 * which is also what makes guessing slow), and a verified key is remembered
 * by its SHA-256 so later requests cost a hash lookup. `postino hosted api-key
 * new <account>` makes one. `setAccounts()` swaps the table (config reload):
 * a removed key stops working at the next request.
 *
 * Side effects: CPU (scrypt) on the first use of each key.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hashPassword, verifyPassword } from './password-hash.js';
import { sameSecret } from './secrets.js';

export type Principal = { kind: 'node' } | { kind: 'account'; account: string; keyId: string };

export interface AccountKeyConfig {
  id: string;
  apiKeys: ReadonlyArray<{ id: string; hash: string }>;
}

/** A key id: what follows `pk_` up to the next `_`. */
export const API_KEY_ID = /^[a-z0-9]{4,32}$/;
const ACCOUNT_KEY = /^pk_([a-z0-9]{4,32})_([A-Za-z0-9_-]{32,128})$/;
/** Verified keys remembered; beyond this the table is cleared (an attacker cannot grow it: only verified keys enter). */
const MAX_REMEMBERED = 10_000;

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class ApiKeys {
  private byId = new Map<string, { account: string; hash: string }>();
  private readonly verified = new Map<string, Principal>();

  constructor(
    private readonly nodeKey: string,
    accounts: ReadonlyArray<AccountKeyConfig>,
  ) {
    this.setAccounts(accounts);
  }

  setAccounts(accounts: ReadonlyArray<AccountKeyConfig>): void {
    const next = new Map<string, { account: string; hash: string }>();
    for (const a of accounts) for (const k of a.apiKeys) next.set(k.id, { account: a.id, hash: k.hash });
    this.byId = next;
    this.verified.clear();
  }

  /** The caller behind a bearer token, or undefined for a wrong one. */
  async principal(token: string): Promise<Principal | undefined> {
    if (!token) return undefined;
    if (sameSecret(token, this.nodeKey)) return { kind: 'node' };
    const m = ACCOUNT_KEY.exec(token);
    if (!m) return undefined;
    const entry = this.byId.get(m[1]!);
    if (!entry) return undefined;
    const d = digest(token);
    const known = this.verified.get(d);
    if (known?.kind === 'account' && known.account === entry.account) return known;
    if (!(await verifyPassword(token, entry.hash))) return undefined;
    // The table may have been swapped while scrypt ran: only a key still listed counts.
    if (this.byId.get(m[1]!)?.hash !== entry.hash) return undefined;
    if (this.verified.size >= MAX_REMEMBERED) this.verified.clear();
    const p: Principal = { kind: 'account', account: entry.account, keyId: m[1]! };
    this.verified.set(d, p);
    return p;
  }
}

/** A new account key: the token to hand out once, and the config entry (hash only). */
export async function newAccountKey(): Promise<{ token: string; entry: { id: string; hash: string } }> {
  const id = randomBytes(6).toString('hex');
  const token = `pk_${id}_${randomBytes(32).toString('base64url')}`;
  return { token, entry: { id, hash: await hashPassword(token) } };
}
