/*
 * audit.ts — the `account.changed` event of each accounts change (API, CLI,
 * reload of the config file): who made it, which part of which account, and
 * the part's whole value before and after, plus its log line. AUTH users
 * appear by name only and API keys by id: a password hash never reaches the
 * feed, the history or the log.
 *
 * Side effects: none (the event is written by account-store.ts).
 */
import type { Principal } from '../../common/api-keys.js';
import type { AccountConfig } from '../../common/config.js';
import type { AccountChange, AccountPart, EventInput, PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';

/** "node", "key:<id>" for an account key, "reload" for the config file. */
export function actorOf(p: Principal | 'reload'): string {
  if (p === 'reload') return 'reload';
  return p.kind === 'node' ? 'node' : `key:${p.keyId}`;
}

/** One part of an account as the feed shows it. */
export function partView(a: AccountConfig | undefined, part: AccountPart): unknown {
  if (!a) return null;
  switch (part) {
    case 'networks':
      return [...a.networks];
    case 'users':
      return a.listener.users.map((u) => u.username);
    case 'senderDomains':
      return [...a.listener.senderDomains];
    case 'quotas':
      return { messagesPerHour: a.listener.messagesPerHour, messagesPerDay: a.listener.messagesPerDay, quotaUnit: a.listener.quotaUnit };
    case 'config':
      return {
        ...a,
        apiKeys: a.apiKeys.map((k) => k.id),
        listener: { ...a.listener, users: a.listener.users.map((u) => u.username) },
      };
  }
}

export function changedEvent(account: string, actor: string, change: AccountChange): EventInput {
  return { type: 'account.changed', account, actor, change };
}

export function logChange(log: Logger, e: PostinoEvent): void {
  log.info({ event: 'account-changed', seq: e.seq, account: e.account, actor: e.actor, part: e.change?.part, action: e.change?.action, item: e.change?.item, forced: e.change?.forced, before: e.change?.before, after: e.change?.after }, `account ${e.account}: ${e.change?.part} ${e.change?.action}${e.change?.item ? ` ${e.change.item}` : ''}`);
}
