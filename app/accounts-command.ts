/*
 * accounts-command.ts — accounts of a running hosted node through its API
 * (engine/accounts/routes.ts), and the reload commands:
 *
 *   postino hosted allow add|remove <account> <cidr> [--force]   the listener allowlist
 *   postino hosted allow list <account>
 *   postino hosted users add <account> <name>        password from stdin, stored as a scrypt hash
 *   postino hosted users remove <account> <name> | list <account>
 *   postino hosted senders add|remove <account> <domain> | list <account>
 *   postino hosted quota get <account>
 *   postino hosted quota set <account> [--per-hour N] [--per-day N] [--unit messages|recipients]
 *   postino hosted history <account> [--limit N]     account.changed events, newest first
 *   postino hosted reload                            re-read the config file (POST /api/reload)
 *   postino forwarder reload                         the forwarder's (POST /reload on its admin API)
 *
 * A change takes effect for the next connection; the node is not restarted.
 * Exit status: 0 done (or nothing to change), 1 refused by the node (the reason
 * is printed: a network too broad without --force, an unknown account, a key
 * of another account), 2 bad usage or, for reload, a config with problems
 * (each printed with its key path; the node keeps its previous settings).
 */
import type { ReloadAnswer } from '../common/config-reload.js';
import type { PostinoEvent } from '../common/events.js';
import { apiTarget, FORWARDER_ADMIN, HOSTED_API, type ApiMethod, type ApiTarget } from './api-client.js';
import { UsageError } from './cli-support.js';

export interface AccountsArgs {
  /** allow | users | senders | quota | history | reload */
  what: string;
  verb: string | undefined;
  account: string | undefined;
  item: string | undefined;
  force: boolean;
  perHour: string | undefined;
  perDay: string | undefined;
  unit: string | undefined;
  limit: string | undefined;
  api: string | undefined;
  admin: string | undefined;
}

/** A refusal of the node, printed as its reason (not a stack): exit 1. */
class Refused extends Error {}

async function call<T>(t: ApiTarget, method: ApiMethod, route: string, json?: unknown): Promise<T> {
  const res = await fetch(new URL(route, t.base), {
    method,
    headers: { authorization: `Bearer ${t.token}`, ...(json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: json === undefined ? null : JSON.stringify(json),
  });
  const text = await res.text();
  if (!res.ok) {
    let reason = text;
    try {
      reason = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      /* not JSON: the text as it came */
    }
    throw new Refused(`${method} ${route}: HTTP ${res.status}: ${reason}`);
  }
  return JSON.parse(text) as T;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

interface ChangeAnswer {
  account: string;
  before: unknown;
  after: unknown;
  changed: boolean;
  event: PostinoEvent | null;
}

function printChange(r: ChangeAnswer, what: string): void {
  const list = (v: unknown): string => (Array.isArray(v) ? v.join(', ') || '(none)' : JSON.stringify(v));
  process.stdout.write(r.changed ? `${what}: ${r.account} now ${list(r.after)} (was ${list(r.before)}); event ${r.event?.seq}\n` : `${what}: nothing to change for ${r.account} (${list(r.after)})\n`);
}

function count(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} is a whole number (0 = unlimited)`);
  return Number(v);
}

/** allow, users, senders: one list of an account each. */
const LISTS = {
  allow: { route: 'networks', field: 'cidr', key: 'networks', what: 'allowlist' },
  users: { route: 'users', field: 'username', key: 'users', what: 'AUTH users' },
  senders: { route: 'sender-domains', field: 'domain', key: 'senderDomains', what: 'sender domains' },
} as const;

async function listCommand(t: ApiTarget, a: AccountsArgs, kind: keyof typeof LISTS): Promise<void> {
  const l = LISTS[kind];
  const usage = `usage: postino hosted ${kind} add|remove <account> <${l.field}>${kind === 'allow' ? ' [--force]' : ''} | list <account>`;
  if (!a.account) throw new UsageError(usage);
  const base = `/api/accounts/${encodeURIComponent(a.account)}/${l.route}`;
  switch (a.verb) {
    case 'list': {
      const r = await call<Record<string, string[]>>(t, 'GET', base);
      process.stdout.write((r[l.key] ?? []).map((x) => x + '\n').join(''));
      return;
    }
    case 'add': {
      if (!a.item) throw new UsageError(usage);
      let body: Record<string, unknown> = { [l.field]: a.item };
      if (kind === 'allow') body = { ...body, force: a.force };
      if (kind === 'users') {
        const password = await readStdin();
        if (!password) throw new UsageError('postino hosted users add reads the password from stdin');
        body = { ...body, password };
      }
      printChange(await call<ChangeAnswer>(t, 'POST', base, body), l.what);
      return;
    }
    case 'remove':
      if (!a.item) throw new UsageError(usage);
      printChange(await call<ChangeAnswer>(t, 'DELETE', `${base}?${l.field}=${encodeURIComponent(a.item)}`), l.what);
      return;
    default:
      throw new UsageError(usage);
  }
}

async function quotaCommand(t: ApiTarget, a: AccountsArgs): Promise<void> {
  const usage = 'usage: postino hosted quota get <account> | set <account> [--per-hour N] [--per-day N] [--unit messages|recipients]';
  if (!a.account) throw new UsageError(usage);
  const route = `/api/accounts/${encodeURIComponent(a.account)}/quotas`;
  if (a.verb === 'get') {
    const { quotas } = await call<{ quotas: { messagesPerHour: number; messagesPerDay: number; quotaUnit: string } }>(t, 'GET', route);
    const n = (v: number): string => (v === 0 ? 'unlimited' : String(v));
    process.stdout.write(`per hour: ${n(quotas.messagesPerHour)}\nper day:  ${n(quotas.messagesPerDay)}\nunit:     ${quotas.quotaUnit}\n`);
    return;
  }
  if (a.verb !== 'set') throw new UsageError(usage);
  if (a.unit !== undefined && a.unit !== 'messages' && a.unit !== 'recipients') throw new UsageError('--unit is messages or recipients');
  const body = { messagesPerHour: count(a.perHour, '--per-hour'), messagesPerDay: count(a.perDay, '--per-day'), quotaUnit: a.unit };
  if (Object.values(body).every((v) => v === undefined)) throw new UsageError(usage);
  printChange(await call<ChangeAnswer>(t, 'PUT', route, body), 'quotas');
}

function printReload(r: ReloadAnswer, source: string): void {
  if (!r.ok) {
    process.stderr.write(`${source}: reload refused, the previous settings stay:\n${r.problems.map((p) => `  ${p.path || '(top level)'}: ${p.message}\n`).join('')}`);
    process.exitCode = 2;
    return;
  }
  process.stdout.write(r.applied.length ? `applied:\n${r.applied.map((p) => `  ${p}\n`).join('')}` : 'applied: nothing changed that applies live\n');
  if (r.restartNeeded.length) process.stdout.write(`changed but needs a restart:\n${r.restartNeeded.map((p) => `  ${p}\n`).join('')}`);
}

export async function accountsCommand(a: AccountsArgs, env: NodeJS.ProcessEnv): Promise<void> {
  try {
    if (a.what === 'forwarder-reload') {
      printReload(await call<ReloadAnswer>(apiTarget(FORWARDER_ADMIN, a.admin, env), 'POST', '/reload'), 'forwarder');
      return;
    }
    const t = apiTarget(HOSTED_API, a.api, env);
    switch (a.what) {
      case 'reload':
        printReload(await call<ReloadAnswer>(t, 'POST', '/api/reload'), 'hosted');
        return;
      case 'allow':
      case 'users':
      case 'senders':
        return await listCommand(t, a, a.what);
      case 'quota':
        return await quotaCommand(t, a);
      case 'history': {
        // `history <account>`: the account is the first word after the command.
        const account = a.verb;
        if (!account) throw new UsageError('usage: postino hosted history <account> [--limit N]');
        const { history } = await call<{ history: PostinoEvent[] }>(t, 'GET', `/api/accounts/${encodeURIComponent(account)}/history?limit=${encodeURIComponent(a.limit ?? '100')}`);
        process.stdout.write(history.map((e) => JSON.stringify(e) + '\n').join(''));
        return;
      }
      default:
        throw new UsageError(`unknown hosted command "${a.what}"`);
    }
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    process.stderr.write(`postino: ${e.message}\n`);
    process.exitCode = 1;
  }
}
