/*
 * overlay.ts — changes made through the accounts API, kept apart from the
 * config file and laid over it: effective accounts = the file's accounts +
 * each account's overlay, validated by the one config schema before use.
 *
 * Lists (networks, sender domains, AUTH users) are kept as deltas, not copies:
 * `add` holds what the file lacks, `remove` what the file has and the API took
 * away. So an operator editing the file and a customer using the API never
 * overwrite each other: a network added in the file appears, one removed by
 * the API stays removed (until added again). Quotas are values that replace
 * the file's. Overlays of accounts no longer in the file are ignored.
 *
 * Side effects: none.
 */
import { parseConfig, type AccountConfig, type Config } from '../../common/config.js';

export interface ListDelta {
  add: string[];
  remove: string[];
}

export interface UserEntry {
  username: string;
  passwordHash: string;
}

export interface QuotaValues {
  messagesPerHour?: number | undefined;
  messagesPerDay?: number | undefined;
  quotaUnit?: 'messages' | 'recipients' | undefined;
}

export interface AccountOverlay {
  networks?: ListDelta | undefined;
  senderDomains?: ListDelta | undefined;
  /** Added users (a new password for a file user too) and removed user names. */
  users?: { add: UserEntry[]; remove: string[] } | undefined;
  quotas?: QuotaValues | undefined;
}

export type ListPart = 'networks' | 'senderDomains';

function applyList(base: readonly string[], d: ListDelta | undefined): string[] {
  if (!d) return [...base];
  const removed = new Set(d.remove);
  const out = base.filter((x) => !removed.has(x));
  for (const x of d.add) if (!out.includes(x)) out.push(x);
  return out;
}

/** One account's effective settings as plain JSON (schema input), from its file entry and overlay. */
function overlaid(a: AccountConfig, o: AccountOverlay | undefined): Record<string, unknown> {
  const plain = JSON.parse(JSON.stringify(a)) as AccountConfig;
  if (!o) return plain as unknown as Record<string, unknown>;
  const removedUsers = new Set(o.users?.remove ?? []);
  const added = new Map((o.users?.add ?? []).map((u) => [u.username, u]));
  const users = plain.listener.users.filter((u) => !removedUsers.has(u.username) && !added.has(u.username)).concat([...added.values()]);
  return {
    ...plain,
    networks: applyList(plain.networks, o.networks),
    listener: {
      ...plain.listener,
      users,
      senderDomains: applyList(plain.listener.senderDomains, o.senderDomains),
      ...Object.fromEntries(Object.entries(o.quotas ?? {}).filter(([, v]) => v !== undefined)),
    },
  };
}

/** The effective accounts, unvalidated (see effectiveConfig). */
export function applyOverlays(accounts: readonly AccountConfig[], overlays: ReadonlyMap<string, AccountOverlay>): Record<string, unknown>[] {
  return accounts.map((a) => overlaid(a, overlays.get(a.id)));
}

/**
 * The file's config with the overlays laid on its accounts, through the same schema (and its
 * cross-account checks) as a file; throws ConfigError with key paths such as `accounts.0.networks.2`.
 */
export function effectiveConfig(file: Config, overlays: ReadonlyMap<string, AccountOverlay>, source = 'accounts'): Config {
  return parseConfig({ ...file, accounts: applyOverlays(file.accounts, overlays) }, source);
}

/** The file's list for a part: what decides whether a removal is a delta or an undo. */
function baseList(a: AccountConfig, part: ListPart): readonly string[] {
  return part === 'networks' ? a.networks : a.listener.senderDomains;
}

export function addToList(base: AccountConfig, o: AccountOverlay, part: ListPart, item: string): AccountOverlay {
  const d = o[part] ?? { add: [], remove: [] };
  const next: ListDelta = { add: d.add.filter((x) => x !== item), remove: d.remove.filter((x) => x !== item) };
  if (!baseList(base, part).includes(item)) next.add.push(item);
  return { ...o, [part]: next };
}

export function removeFromList(base: AccountConfig, o: AccountOverlay, part: ListPart, item: string): AccountOverlay {
  const d = o[part] ?? { add: [], remove: [] };
  const next: ListDelta = { add: d.add.filter((x) => x !== item), remove: d.remove.filter((x) => x !== item) };
  if (baseList(base, part).includes(item)) next.remove.push(item);
  return { ...o, [part]: next };
}

export function setUser(o: AccountOverlay, user: UserEntry): AccountOverlay {
  const u = o.users ?? { add: [], remove: [] };
  return { ...o, users: { add: [...u.add.filter((x) => x.username !== user.username), user], remove: u.remove.filter((x) => x !== user.username) } };
}

export function removeUser(base: AccountConfig, o: AccountOverlay, username: string): AccountOverlay {
  const u = o.users ?? { add: [], remove: [] };
  const inFile = base.listener.users.some((x) => x.username === username);
  return { ...o, users: { add: u.add.filter((x) => x.username !== username), remove: [...u.remove.filter((x) => x !== username), ...(inFile ? [username] : [])] } };
}

export function setQuotas(o: AccountOverlay, q: QuotaValues): AccountOverlay {
  return { ...o, quotas: { ...o.quotas, ...Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) } };
}

/** Object keys sorted at every level: jsonb gives them back in its own order. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, canonical(x)]));
  return v;
}

/** One string per set of overlays, the same whatever the key order; empty overlays count as none. */
export function overlaysFingerprint(all: ReadonlyMap<string, AccountOverlay>): string {
  return JSON.stringify(
    [...all]
      .map(([k, o]) => [k, canonical(o)] as const)
      .filter(([, o]) => JSON.stringify(o) !== '{}')
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
}
