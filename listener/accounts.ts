/*
 * accounts.ts — who a listener session belongs to, and what it may do.
 *
 * Config: `accounts[]` — `id`, `networks` (CIDRs its forwarders connect from)
 * and `listener` (users with scrypt hashes, senderDomains, requireTls,
 * allowInsecureAuth, quotas, maxRecipients; defaults in common/config.ts).
 *
 * A client address may fall in several accounts' networks (a shared NAT). The
 * session's account is then the one whose user authenticated; without AUTH, the
 * first matching account (config order) that has no users. An account with
 * users always needs AUTH. An address in no account's networks never gets a
 * session (554 5.7.1 at connect, in smtp-server.ts's gate).
 *
 * Side effects: none (password checks run scrypt on the thread pool).
 */
import type { SMTPServerSession } from 'smtp-server';
import { NetworkList } from '../common/cidr.js';
import type { AccountConfig, AccountListenerConfig } from '../common/config.js';
import { PostinoError } from '../common/errors.js';
import { verifyPassword } from '../common/password-hash.js';

export interface ListenerAccount {
  id: string;
  networks: NetworkList;
  policy: AccountListenerConfig;
  /** username → scrypt hash */
  users: Map<string, string>;
}

/** Compared against when the username is unknown, so a miss costs as much time as a wrong password. */
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

export class AccountTable {
  readonly list: ListenerAccount[];
  private readonly authed = new WeakMap<SMTPServerSession, ListenerAccount>();

  constructor(accounts: readonly AccountConfig[]) {
    this.list = accounts.map((a) => ({
      id: a.id,
      networks: new NetworkList(a.networks),
      policy: a.listener,
      users: new Map(a.listener.users.map((u) => [u.username, u.passwordHash])),
    }));
  }

  get anyAuth(): boolean {
    return this.list.some((a) => a.users.size > 0);
  }

  get anyInsecureAuth(): boolean {
    return this.list.some((a) => a.users.size > 0 && a.policy.allowInsecureAuth);
  }

  /** Whether a client at `ip` is offered AUTH before STARTTLS: only inside the networks of an account that allows it. */
  insecureAuthFrom(ip: string): boolean {
    return this.forAddress(ip).some((a) => a.users.size > 0 && a.policy.allowInsecureAuth);
  }

  forAddress(ip: string): ListenerAccount[] {
    return this.list.filter((a) => a.networks.contains(ip));
  }

  /** The gate's allowlist: an address in no account's networks is refused at connect. */
  admit(ip: string): PostinoError | undefined {
    return this.list.some((a) => a.networks.contains(ip)) ? undefined : new PostinoError('NOT_ALLOWED_NETWORK', `Access denied for ${ip}`);
  }

  /** The account a session sends for, or the error MAIL gets (530 for TLS or AUTH first). */
  accountOf(session: SMTPServerSession): ListenerAccount {
    const authed = session.user ? this.authed.get(session) : undefined;
    if (authed) return authed;
    const candidates = this.forAddress(session.remoteAddress);
    if (!session.secure && candidates.length > 0 && candidates.every((a) => a.policy.requireTls)) {
      throw new PostinoError('TLS_REQUIRED', 'Must issue a STARTTLS command first');
    }
    // Before STARTTLS, an account that takes plain text is the one this session can send for:
    // picking a TLS-only one by config order would refuse it at MAIL (530) although another
    // account of the same network allows it. With TLS, config order decides.
    const open = candidates.find((a) => a.users.size === 0 && (session.secure || !a.policy.requireTls)) ?? candidates.find((a) => a.users.size === 0);
    if (!open) throw new PostinoError('AUTH_REQUIRED', 'Authentication required');
    return open;
  }

  /**
   * Checks a username/password against the accounts this address may belong to;
   * records the account on the session. Rejects with AUTH_NEEDS_TLS or AUTH_FAILED.
   */
  async authenticate(username: string, password: string, session: SMTPServerSession): Promise<ListenerAccount> {
    const candidates = this.forAddress(session.remoteAddress).filter((a) => a.users.size > 0);
    const usable = session.secure ? candidates : candidates.filter((a) => a.policy.allowInsecureAuth);
    if (usable.length === 0 && candidates.length > 0) throw new PostinoError('AUTH_NEEDS_TLS', 'Must issue a STARTTLS command first');
    let found: ListenerAccount | undefined;
    let tried = false;
    for (const a of usable) {
      const hash = a.users.get(username);
      if (!hash) continue;
      tried = true;
      if (await verifyPassword(password, hash)) {
        found = a;
        break;
      }
    }
    if (!tried) await verifyPassword(password, DUMMY_HASH);
    if (!found) throw new PostinoError('AUTH_FAILED', 'Authentication credentials invalid');
    this.authed.set(session, found);
    return found;
  }
}
