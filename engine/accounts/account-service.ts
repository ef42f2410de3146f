/*
 * account-service.ts — the hosted node's accounts while it runs: the config
 * file's accounts plus the accounts API's overlays (overlay.ts), validated by
 * the config schema, kept (account-store.ts) with an `account.changed` event
 * each (audit.ts), and swapped into the one AccountsSnapshot the listener, the
 * rewrap settings and the API keys read. Changes and reloads run one at a time.
 *
 * Reload (SIGHUP, POST /api/reload): the file is read and validated again with
 * the overlays on top; with any problem nothing changes and the problems come
 * back with their key paths. Otherwise the accounts are swapped (new
 * connections use them, sessions in progress finish under the old ones) and
 * every other changed key is named as needing a restart, as are accounts added
 * or removed (their mail, kill-switch and suppressions work at once; sending IPs and notifications wait),
 * accounts[].delivery (sending IPs are bound at start) and
 * accounts[].engine.notify (the notifier reads it at start) and accounts[].webhooks
 * (the dispatcher reads the file's endpoints at start; the webhooks API is live).
 *
 * Several nodes (storage.postgres, account-store-postgres.ts): a change made
 * on another node arrives through the store's poll and is swapped in the same
 * way; a change here that raced one there is made again on top of it.
 *
 * Config: accounts[], listener.minAccountPrefix (network-policy.ts).
 * Side effects: LevelDB or PostgreSQL writes through the store; swaps the snapshot.
 */
import type { Principal } from '../../common/api-keys.js';
import type { AccountsSnapshot } from '../../common/accounts-snapshot.js';
import { ConfigError, type AccountConfig, type Config } from '../../common/config.js';
import { accountPaths, answerFor, changedPaths, refused, tryReload, type ReloadAnswer } from '../../common/config-reload.js';
import { PostinoError } from '../../common/errors.js';
import type { AccountChange, AccountPart, PostinoEvent } from '../../common/events.js';
import { KeyedLock } from '../../common/keyed-lock.js';
import type { Logger } from '../../common/log.js';
import { StaleOverlay, type AccountStore, type AccountWrite } from './account-store.js';
import { actorOf, changedEvent, logChange, partView } from './audit.js';
import { tooBroad } from './network-policy.js';
import { addToList, effectiveConfig, overlaysFingerprint, removeFromList, removeUser, setQuotas, setUser, type AccountOverlay, type QuotaValues, type UserEntry } from './overlay.js';

/** One change through the API: the part, and how. */
export type AccountEdit =
  | { part: 'networks' | 'senderDomains'; action: 'add' | 'remove'; item: string; force?: boolean | undefined }
  | { part: 'users'; action: 'add'; user: UserEntry }
  | { part: 'users'; action: 'remove'; item: string }
  | { part: 'quotas'; action: 'set'; quotas: QuotaValues };

/** Edits made again after another node's change to the same account, before giving up (a storm of edits). */
const MAX_STALE_RETRIES = 5;

export interface EditResult {
  account: string;
  part: AccountPart;
  before: unknown;
  after: unknown;
  /** The account.changed event; undefined when nothing changed (adding what is there already). */
  event: PostinoEvent | undefined;
}

/**
 * Keys a running hosted node takes from a reload; every other changed key needs a restart,
 * and so does `accounts[<id>]` whole (an account added or removed: see the header).
 */
function liveOnHosted(path: string): boolean {
  if (path === 'listener.minAccountPrefix' || path.startsWith('listener.minAccountPrefix.')) return true;
  const m = /^accounts\[[^\]]+\]\.(.+)$/.exec(path);
  if (!m) return false;
  const rest = m[1]!;
  return !rest.startsWith('delivery') && !rest.startsWith('engine.notify') && !rest.startsWith('webhooks');
}

/** The sections a hosted node uses; the forwarder's and the sink's are other processes' business. */
function hostedSections(c: Config): Record<string, unknown> {
  const { accounts: _a, forwarder: _f, sink: _s, ...rest } = c;
  return rest;
}

export interface AccountServiceOptions {
  /** The config the node started with (or last reloaded). */
  config: Config;
  store: AccountStore;
  snapshot: AccountsSnapshot;
  /** Reads and validates the file again (Runtime.reloadConfig); absent = reload refused. */
  reloadConfig?: (() => Config) | undefined;
  log: Logger;
}

export class AccountService {
  private file: Config;
  private overlays: Map<string, AccountOverlay>;
  private readonly lock = new KeyedLock();
  /** Bumped by every change kept or taken from elsewhere: a poll read before one is not applied over it. */
  private generation = 0;
  /** The last set from another node this node's file refused (logged once). */
  private refusedRemote = '';

  private constructor(
    private readonly o: AccountServiceOptions,
    overlays: Map<string, AccountOverlay>,
  ) {
    this.file = o.config;
    this.overlays = overlays;
  }

  /**
   * Reads the overlays and swaps in the effective accounts. Overlays that no longer fit the
   * file (a config edit made them invalid) stop the start with their key paths, as a bad file does.
   */
  static async open(o: AccountServiceOptions): Promise<AccountService> {
    const overlays = await o.store.overlays();
    const s = new AccountService(o, overlays);
    const effective = effectiveConfig(o.config, overlays, 'config file + accounts API changes');
    o.snapshot.swap(effective.accounts);
    if (overlays.size > 0) o.log.info({ event: 'account-overlays', accounts: [...overlays.keys()] }, 'accounts API changes applied over the config file');
    o.store.watch?.((all) => s.fromElsewhere(all));
    return s;
  }

  get accounts(): readonly AccountConfig[] {
    return this.o.snapshot.current;
  }

  account(id: string): AccountConfig {
    const a = this.accounts.find((x) => x.id === id);
    if (!a) throw new PostinoError('NOT_FOUND', `no account "${id}"`);
    return a;
  }

  history(id: string, limit: number): Promise<PostinoEvent[]> {
    this.account(id);
    return this.o.store.history(id, limit);
  }

  /** Applies one edit: checked, validated with the whole config, kept with its event, then swapped in. */
  edit(id: string, e: AccountEdit, by: Principal): Promise<EditResult> {
    return this.lock.run('accounts', async () => {
      const base = this.file.accounts.find((a) => a.id === id);
      if (!base) throw new PostinoError('NOT_FOUND', `no account "${id}"`);
      if (e.part === 'networks' && e.action === 'add') {
        const why = tooBroad(e.item, this.file.listener.minAccountPrefix);
        // An account key widening its own allowlist past the limit is exactly what the limit is for.
        if (why && e.force && by.kind !== 'node') throw new PostinoError('FORBIDDEN', `${why}; only the node key can force it`);
        if (why && !e.force) throw new PostinoError('BAD_REQUEST', `${why}; refused without force (CLI --force)`);
      }
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.editOnce(id, base, e, by);
        } catch (err) {
          // Another node changed the account since this one last read it: made again on top of its change.
          if (!(err instanceof StaleOverlay) || attempt >= MAX_STALE_RETRIES) throw err;
          this.takeStale(id, err.current);
        }
      }
    });
  }

  private async editOnce(id: string, base: AccountConfig, e: AccountEdit, by: Principal): Promise<EditResult> {
    const cur = this.overlays.get(id) ?? {};
    const next = this.applyEdit(base, cur, e);
    const overlays = new Map(this.overlays).set(id, next);
    let effective: Config;
    try {
      effective = effectiveConfig(this.file, overlays);
    } catch (err) {
      if (err instanceof ConfigError) throw new PostinoError('BAD_REQUEST', err.problems.map((p) => `${p.path}: ${p.message}`).join('; '));
      throw err;
    }
    const beforeAccount = this.account(id);
    const afterAccount = effective.accounts.find((a) => a.id === id)!;
    const before = partView(beforeAccount, e.part);
    const after = partView(afterAccount, e.part);
    // A password change leaves the user names alike: it is a change all the same.
    const same = JSON.stringify(before) === JSON.stringify(after) && !(e.part === 'users' && e.action === 'add');
    if (same) return { account: id, part: e.part, before, after, event: undefined };
    const change: AccountChange = { part: e.part, action: e.action, before, after, ...('item' in e ? { item: e.item } : {}), ...(e.part === 'users' && e.action === 'add' ? { item: e.user.username } : {}), ...('force' in e && e.force ? { forced: true } : {}) };
    const [event] = await this.o.store.write([{ account: id, overlay: next, basedOn: cur, audit: changedEvent(id, actorOf(by), change) }]);
    this.generation++;
    this.overlays = overlays;
    this.o.snapshot.swap(effective.accounts);
    if (event) logChange(this.o.log, event);
    return { account: id, part: e.part, before, after, event };
  }

  /** An account as another node left it (StaleOverlay), swapped in before the change is made again. */
  private takeStale(id: string, current: AccountOverlay): void {
    const overlays = new Map(this.overlays).set(id, current);
    this.overlays = overlays;
    this.generation++;
    try {
      this.o.snapshot.swap(effectiveConfig(this.file, overlays, 'accounts API changes from another node').accounts);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err; // the edit made again reports what does not fit
    }
  }

  /**
   * Overlays another node wrote (a shared store's poll): swapped in as after a change here.
   * A set this node's file cannot take (its file differs from the other node's) is logged once
   * and this node keeps its accounts.
   */
  private fromElsewhere(all: Map<string, AccountOverlay>): void {
    const seen = this.generation;
    void this.lock
      .run('accounts', async () => {
        if (seen !== this.generation) return; // a change here meanwhile: the next poll brings both
        const fp = overlaysFingerprint(all);
        if (fp === overlaysFingerprint(this.overlays)) return;
        let effective: Config;
        try {
          effective = effectiveConfig(this.file, all, 'accounts API changes from another node');
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          if (fp !== this.refusedRemote) this.o.log.error({ event: 'account-overlays-refused', problems: err.problems }, `accounts API changes made on another node do not fit this node's config file; keeping the previous accounts: ${err.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
          this.refusedRemote = fp;
          return;
        }
        const changed = [...new Set([...all.keys(), ...this.overlays.keys()])].filter((a) => overlaysFingerprint(new Map([[a, all.get(a) ?? {}]])) !== overlaysFingerprint(new Map([[a, this.overlays.get(a) ?? {}]])));
        this.generation++;
        this.overlays = all;
        this.o.snapshot.swap(effective.accounts);
        this.o.log.info({ event: 'account-overlays-synced', accounts: changed }, `accounts changed on another node applied: ${changed.join(', ')}`);
      })
      .catch((err: unknown) => this.o.log.error({ err }, 'accounts changed on another node not applied'));
  }

  private applyEdit(base: AccountConfig, o: AccountOverlay, e: AccountEdit): AccountOverlay {
    switch (e.part) {
      case 'networks':
      case 'senderDomains':
        return e.action === 'add' ? addToList(base, o, e.part, e.item) : removeFromList(base, o, e.part, e.item);
      case 'users':
        return e.action === 'add' ? setUser(o, e.user) : removeUser(base, o, e.item);
      case 'quotas':
        return setQuotas(o, e.quotas);
    }
  }

  /** Re-reads the config file (see the header); never throws for a bad file. */
  reload(): Promise<ReloadAnswer> {
    return this.lock.run('accounts', async () => {
      const read = this.o.reloadConfig;
      if (!read) return refused([{ path: '', message: 'this process was started without a config file to re-read' }]);
      const r = tryReload(read);
      if ('problems' in r) return this.refuse(r.problems);
      let effective: Config;
      try {
        effective = effectiveConfig(r.config, this.overlays, 'config file + accounts API changes');
      } catch (err) {
        if (err instanceof ConfigError) return this.refuse(err.problems);
        throw err;
      }
      const old = this.accounts;
      const paths = [...changedPaths(hostedSections(this.file), hostedSections(r.config)), ...accountPaths(old, effective.accounts)];
      const writes: AccountWrite[] = [];
      for (const a of effective.accounts) {
        const prev = old.find((x) => x.id === a.id);
        if (prev && JSON.stringify(prev) === JSON.stringify(a)) continue;
        writes.push({ account: a.id, audit: changedEvent(a.id, 'reload', { part: 'config', action: 'reload', before: partView(prev, 'config'), after: partView(a, 'config') }) });
      }
      for (const prev of old) {
        if (!effective.accounts.some((a) => a.id === prev.id)) writes.push({ account: prev.id, audit: changedEvent(prev.id, 'reload', { part: 'config', action: 'reload', before: partView(prev, 'config'), after: null }) });
      }
      const events = writes.length ? await this.o.store.write(writes) : [];
      this.file = r.config;
      this.o.snapshot.swap(effective.accounts);
      for (const e of events) logChange(this.o.log, e);
      const answer = answerFor(paths, liveOnHosted);
      this.o.log.info({ event: 'config-reloaded', applied: answer.applied, restartNeeded: answer.restartNeeded }, `config reloaded: ${answer.applied.length} change(s) applied, ${answer.restartNeeded.length} need a restart`);
      return answer;
    });
  }

  private refuse(problems: ReloadAnswer['problems']): ReloadAnswer {
    this.o.log.error({ event: 'config-reload-refused', problems }, `config reload refused, still serving the previous accounts: ${problems.map((p) => `${p.path || '(top level)'}: ${p.message}`).join('; ')}`);
    return refused(problems);
  }
}
