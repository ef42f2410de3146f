/*
 * webhooks.ts — POSTs each account's events to its endpoints, in batches,
 * signed per Standard Webhooks (webhook-signing.ts), with undici.
 *
 * A reader of the event log like any other (DESIGN.md: readers follow the log
 * by cursor, nothing on the mail path waits for them): each endpoint has its
 * own loop, so a slow or dead endpoint delays only itself. Its durable state,
 * one key written atomically:
 *   ws!<account>!<endpoint id> → {cursor, batch?, disabled?, failures}
 * The outbox is the batch: before the first POST of a batch its events, its
 * `webhook-id` and the seq it ends at are written with sync, and the same
 * bytes under the same id are retried until a 2xx; then cursor := batch end
 * and batch := none, with sync. So a restart neither drops a batch nor
 * re-sends one that got a 2xx (only the window between the 2xx and that
 * write can repeat a batch, with its same id, which receivers dedupe on).
 * The last deliveries of each endpoint (batches and test events: when, the
 * receiver's status code, latency, error), newest first, at most
 * RECENT_DELIVERIES of them, for the dashboard and GET /api/webhooks/:id/deliveries:
 *   wr!<account>!<endpoint id> → [{at, kind, webhookId, events, status, ms, error}]
 * written without sync after each POST (a crash loses at most the last few lines
 * of a log kept for people to read; the outbox above is what must not be lost).
 * Endpoints added by API: wh!<account>!<id> → {url, types, secret, createdAt}
 * (the secret is shown once, when it is made). Config endpoints keep their
 * state under the same ws! key; a new endpoint starts at the current end of the
 * log (it gets what happens from now on, not the whole history).
 *
 * Several nodes (storage.postgres): each node posts the events it shipped to
 * the global feed (app/shared-state.ts: its WebhookSource scans the feed for
 * its own node), with the feed's seq as cursor, and the outbox is a row of
 * PostgreSQL per endpoint and origin node instead of the ws! key
 * (webhook-outbox-postgres.ts; the ws! key only seeds a new row), held under
 * a lease of events.webhooks.takeoverSeconds. Each node renews its leases
 * every sixth of it (the dispatcher's tick). A node silent for that long has
 * its rows taken by one other node, whose loop for that origin posts the
 * pending batch first (same webhook-id, same bytes), then the dead node's
 * events from the feed. Every write is fenced by the holder, and no POST
 * starts with less than the POST timeout left on the lease: a node that lost
 * its row (paused, cut off) writes and posts nothing more of it. The origin,
 * started again, asks its rows back; the holder stops that loop and hands
 * the row over with its pending batch. Each event is posted once, except a
 * pending batch, which may be posted by two nodes under its one webhook-id
 * (test/e2e/multi-node-stats.test.ts). A node takes over only endpoints it
 * knows: the file's (on every node) and the API-added ones, which are every
 * node's (webhook-endpoints-postgres.ts: one added or deleted through any node
 * is posted to, or stops, on all within ~1 s). An endpoint's disabled state
 * and last deliveries stay each node's own.
 *
 * Retries: events.webhooks.retrySeconds between attempts (the last repeats);
 * an endpoint failing for events.webhooks.disableAfterHours is disabled, and
 * a `webhook.disabled` event is written (the account's notifier reports it).
 * Body: {"type":"postino.events","timestamp":"…","data":{"events":[…]}}.
 *
 * Config: events.webhooks.{batchSize, batchWaitMs, timeoutSeconds, retrySeconds,
 * disableAfterHours, takeoverSeconds}, accounts[].webhooks. Side effects: HTTP
 * POSTs; LevelDB reads and writes; PostgreSQL statements (shared outbox); timers.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import type { AccountConfig, EventsConfig } from '../../common/config.js';
import { PostinoError } from '../../common/errors.js';
import type { PostinoEvent } from '../../common/events.js';
import type { Logger } from '../../common/log.js';
import type { Store } from '../../common/store.js';
import { KeyedLock } from '../../common/keyed-lock.js';
import type { EventLog } from './event-log.js';
import { endpointKey, LevelWebhookEndpoints, type WebhookEndpointStore } from './webhook-endpoints.js';
import { newWebhookMessageId, newWebhookSecret, signatureHeaders } from './webhook-signing.js';

type WebhooksConfig = EventsConfig['webhooks'];
const HOUR_MS = 3_600_000;
/** A receiver's answer body is read and thrown away, at most this much of it (we only need the status). */
const MAX_REPLY_BYTES = 64 * 1024;
/** Deliveries kept per endpoint: enough to see a pattern (a run of 500s, growing latency), bounded whatever the volume. */
export const RECENT_DELIVERIES = 50;

export interface Endpoint {
  account: string;
  id: string;
  url: string;
  types: string[];
  secret: string;
  source: 'config' | 'api';
  createdAt?: string | undefined;
}

interface Batch {
  id: string;
  /** The last seq of the events in it: the cursor once it is acknowledged. */
  lastSeq: number;
  body: string;
  events: number;
  attempts: number;
  firstFailAt?: number | undefined;
  nextAt?: number | undefined;
  lastError?: string | undefined;
}

interface State {
  /** The seq up to which the events are posted (or skipped); -1: the source's top when the loop first runs. */
  cursor: number;
  batch?: Batch | undefined;
  disabled?: { at: string; reason: string } | undefined;
  failures: number;
  delivered: number;
}

/** An endpoint's outbox state, as the shared outbox (webhook-outbox-postgres.ts) keeps it. */
export type OutboxState = State;

/** One row of the shared outbox: an endpoint's outbox for the events of one origin node. */
export interface OutboxRow {
  account: string;
  endpoint: string;
  /** The node that shipped the events. */
  origin: string;
  /** Its origin asks for it back. */
  reclaim: boolean;
  /** Absent for the renewing node's own rows (its loops have it). */
  state?: State | undefined;
}

/**
 * The outbox every node of one PostgreSQL shares (webhook-outbox-postgres.ts):
 * rows held by one node at a time under a lease, every write fenced by the holder.
 */
export interface SharedOutbox {
  /** This node. */
  readonly node: string;
  /** How long a row stays a node's without renewal (events.webhooks.takeoverSeconds). */
  readonly leaseMs: number;
  /** This node's row of an endpoint, created from `initial`: its state when this node holds it now, else undefined (asked back). */
  claim(account: string, endpoint: string, initial: State): Promise<State | undefined>;
  /** Fenced write; false when another node holds the row now. */
  save(account: string, endpoint: string, origin: string, state: State): Promise<boolean>;
  /** Renews every lease this node holds; those rows. */
  renew(): Promise<OutboxRow[]>;
  /** Takes the rows of these endpoints (`account!id`) whose lease ran out; those rows. */
  take(endpoints: readonly string[]): Promise<OutboxRow[]>;
  /** Gives a row back to its origin. */
  handBack(account: string, endpoint: string, origin: string): Promise<void>;
  remove(account: string, endpoint: string): Promise<void>;
  /** The events one node shipped. */
  scan(origin: string, after: number, top: number): AsyncGenerator<PostinoEvent>;
}

/** A write found another node holding the row (or this node's lease is ending): the loop stops posting. */
class LeaseLost extends Error {}

export interface EndpointView {
  account: string;
  id: string;
  url: string;
  types: string[];
  source: 'config' | 'api';
  cursor: number;
  /** Seqs between this endpoint's cursor and the end of the log (all accounts'; an upper bound of its backlog). */
  lag: number;
  pending: { id: string; events: number; attempts: number; failingSince: string | null; nextAttemptAt: string | null; lastError: string | null } | null;
  disabled: { at: string; reason: string } | null;
  failures: number;
  delivered: number;
}

/** One POST to an endpoint, as the dashboard lists it. */
export interface DeliveryRecord {
  at: string;
  /** A batch of events from the outbox, or a test event sent on request. */
  kind: 'events' | 'test';
  /** The `webhook-id` header (the same on each retry of one batch). */
  webhookId: string;
  events: number;
  /** The receiver's HTTP status; null when there was no answer (refused, timed out). */
  status: number | null;
  /** From sending the request to the end of the answer's body (or the error). */
  ms: number;
  ok: boolean;
  error: string | null;
}

/**
 * Where the endpoints' events come from: this node's log (one node), or, with
 * storage.postgres, this node's events as the global feed numbers them
 * (app/shared-state.ts), so a webhook carries the same `seq` as GET /api/events.
 */
export interface WebhookSource {
  /** The highest seq an endpoint may be sent now. */
  top(): Promise<number>;
  scan(after: number, top: number): AsyncGenerator<PostinoEvent>;
  /** Called when new events may be there. */
  subscribe(fn: () => void): void;
  /** With several nodes: the shared outbox; absent: the outbox is this node's LevelDB (ws! keys). */
  outbox?: SharedOutbox | undefined;
}

export function localWebhookSource(events: EventLog): WebhookSource {
  return { top: async () => events.watermark, scan: (after, top) => events.scan(after, top), subscribe: (fn) => events.subscribe(() => fn()) };
}

/** While the source does not answer (PostgreSQL down), an endpoint's loop looks again this often. */
const SOURCE_RETRY_MS = 2_000;

export interface WebhookOptions {
  store: Store;
  /** The node's log: the endpoints' own events (webhook.disabled) are written there. */
  events: EventLog;
  /** Absent: `events`. */
  source?: WebhookSource | undefined;
  /** Where API endpoints are kept (app/shared-state.ts); absent: this node's LevelDB. */
  endpoints?: WebhookEndpointStore | undefined;
  config: WebhooksConfig;
  accounts: readonly AccountConfig[];
  env: NodeJS.ProcessEnv;
  log: Logger;
  now?: () => number;
}

function stateKey(account: string, id: string): string {
  return `ws!${account}!${id}`;
}
function recentKey(account: string, id: string): string {
  return `wr!${account}!${id}`;
}

/** One endpoint's loop. */
class EndpointWorker {
  state: State = { cursor: 0, failures: 0, delivered: 0 };
  /** The last deliveries, newest first (wr! key). */
  recent: DeliveryRecord[] = [];
  private stopped = false;
  private wakeUp: (() => void) | undefined;
  private readonly abort = new AbortController();
  done: Promise<void> = Promise.resolve();
  /** Shared outbox: this node holds the row now (a LevelDB outbox is always this node's). */
  holding: boolean;
  /** Shared outbox: local time the lease is known to last until (renewed with the dispatcher's tick). */
  leaseUntil = 0;

  /** `origin`: the node whose events this loop posts, when not this node's (a row taken over). */
  constructor(
    readonly ep: Endpoint,
    private readonly d: WebhookDispatcher,
    readonly origin?: string | undefined,
  ) {
    this.holding = !d.shared;
  }

  /** The shared outbox's row key (account!id!origin). */
  get rowKey(): string {
    return `${this.ep.account}!${this.ep.id}!${this.origin ?? this.d.shared?.node ?? ''}`;
  }

  /** Another node holds the row now: nothing more is posted (an own loop asks for it back). */
  lose(): void {
    this.holding = false;
    this.leaseUntil = 0;
  }

  /** `initialCursor` undefined: the source's top, read when the loop first runs (an endpoint starts with what comes next). */
  async load(initialCursor: number | undefined): Promise<void> {
    const recent = await this.d.o.store.db.get(recentKey(this.ep.account, this.ep.id));
    this.recent = recent ? (JSON.parse(recent.toString('utf8')) as DeliveryRecord[]) : [];
    const v = await this.d.o.store.db.get(stateKey(this.ep.account, this.ep.id));
    if (v) this.state = JSON.parse(v.toString('utf8')) as State;
    else {
      this.state = { cursor: initialCursor ?? -1, failures: 0, delivered: 0 };
      // Shared outbox: the row is made by the first claim (run()), from this state.
      if (initialCursor !== undefined && !this.d.shared) await this.save(true);
    }
  }

  start(): void {
    this.done = this.run().catch((err: unknown) => this.d.o.log.error({ err, account: this.ep.account, webhook: this.ep.id }, 'webhook loop ended'));
  }

  wake(): void {
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake();
    await this.done;
  }

  private async save(sync: boolean): Promise<void> {
    const shared = this.d.shared;
    if (shared) {
      // Fenced: a node that lost the row moves no cursor and writes no new batch.
      if (!(await shared.save(this.ep.account, this.ep.id, this.origin ?? shared.node, this.state))) throw new LeaseLost('another node holds this outbox row now');
      return;
    }
    return this.d.o.store.commit([{ type: 'put', key: stateKey(this.ep.account, this.ep.id), value: Buffer.from(JSON.stringify(this.state)) }], { sync });
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      this.wakeUp = () => {
        this.wakeUp = undefined;
        resolve();
      };
    });
  }

  private wanted(e: PostinoEvent): boolean {
    return e.account === this.ep.account && (this.ep.types.length === 0 || this.ep.types.includes(e.type));
  }

  /** The next batch from the cursor, or undefined (cursor moved past what is not ours). */
  private async nextBatch(): Promise<Batch | undefined> {
    const top = await this.d.top();
    if (this.state.cursor < 0) {
      this.state.cursor = top;
      await this.save(true);
    }
    const picked: PostinoEvent[] = [];
    let last = this.state.cursor;
    const events = this.origin !== undefined ? this.d.shared!.scan(this.origin, this.state.cursor, top) : this.d.source.scan(this.state.cursor, top);
    for await (const e of events) {
      last = e.seq;
      if (!this.wanted(e)) continue;
      picked.push(e);
      if (picked.length >= this.d.o.config.batchSize) break;
    }
    if (!picked.length) {
      if (last !== this.state.cursor) {
        this.state.cursor = last;
        await this.save(false); // only skipped others' events: redoing that after a crash costs a scan
      }
      return undefined;
    }
    const body = JSON.stringify({ type: 'postino.events', timestamp: new Date(this.d.now()).toISOString(), data: { events: picked } });
    return { id: newWebhookMessageId(), lastSeq: picked.at(-1)!.seq, body, events: picked.length, attempts: 0 };
  }

  private async run(): Promise<void> {
    const shared = this.d.shared;
    let asked = false;
    while (!this.stopped) {
      if (shared && !this.holding) {
        if (this.origin !== undefined) return; // a taken-over row lost: the dispatcher's tick looks again
        const t0 = this.d.now();
        const s = await shared.claim(this.ep.account, this.ep.id, this.state).catch((err: unknown) => {
          this.d.o.log.debug({ err: { message: (err as Error).message }, account: this.ep.account, webhook: this.ep.id }, 'webhook outbox not readable; retrying');
          return undefined;
        });
        if (!s) {
          if (!asked) this.d.o.log.info({ event: 'webhook-reclaim', account: this.ep.account, webhook: this.ep.id }, "webhook outbox held by another node: asked it back (that node hands it over with its pending batch)");
          asked = true;
          // Not woken by new events: one look per tick while the holder hands the row over.
          await sleep(this.d.tickMs, undefined, { signal: this.abort.signal }).catch(() => undefined);
          continue;
        }
        asked = false;
        this.state = s;
        this.holding = true;
        this.leaseUntil = t0 + shared.leaseMs;
      }
      try {
        if (!(await this.step())) return;
      } catch (err) {
        if (!shared) throw err;
        // The row is another node's, or PostgreSQL failed mid-step: what is in memory may be ahead
        // of the row, so it is read again (claim) before anything more is posted.
        this.lose();
        if (err instanceof LeaseLost) this.d.o.log.info({ event: 'webhook-lease-lost', account: this.ep.account, webhook: this.ep.id, origin: this.origin ?? shared.node, reason: err.message }, 'webhook outbox row no longer held by this node: stopped posting it');
        else {
          this.d.o.log.debug({ err: { message: (err as Error).message }, account: this.ep.account, webhook: this.ep.id }, 'webhook outbox write failed; retrying');
          await sleep(SOURCE_RETRY_MS, undefined, { signal: this.abort.signal }).catch(() => undefined);
        }
      }
    }
  }

  /** Waits `ms` or until woken. */
  private async pause(ms: number): Promise<void> {
    const timer = new AbortController(); // cancelled on a wake: no timer left behind per wake
    const onStop = (): void => timer.abort();
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    await Promise.race([this.idle(), sleep(ms, undefined, { signal: timer.signal }).catch(() => undefined)]);
    this.wakeUp = undefined;
    timer.abort();
    this.abort.signal.removeEventListener('abort', onStop);
  }

  /** One turn of the loop; false: the loop ends (disabled, or stopped mid-POST). */
  private async step(): Promise<boolean> {
    if (this.state.disabled) return false;
    if (!this.state.batch) {
      const wake = this.idle(); // armed before the scan: an event settling meanwhile wakes us
      let b: Batch | undefined;
      try {
        b = await this.nextBatch();
      } catch (err) {
        // The source does not answer (the global feed's PostgreSQL): the events wait; look again.
        this.d.o.log.debug({ err: { message: (err as Error).message }, account: this.ep.account, webhook: this.ep.id }, 'webhook events not readable; retrying');
        this.wakeUp = undefined;
        if (this.d.shared) throw err; // the row is read again before going on
        await sleep(SOURCE_RETRY_MS, undefined, { signal: this.abort.signal }).catch(() => undefined);
        return true;
      }
      if (!b) {
        await wake;
        // Let a trickle of events gather into one batch (events.webhooks.batchWaitMs).
        if (!this.stopped && this.d.o.config.batchWaitMs > 0) await sleep(this.d.o.config.batchWaitMs, undefined, { signal: this.abort.signal }).catch(() => undefined);
        return true;
      }
      this.wakeUp = undefined;
      this.state.batch = b;
      await this.save(true); // the outbox entry exists before the first POST
    }
    const b = this.state.batch!;
    const wait = (b.nextAt ?? 0) - this.d.now();
    if (wait > 0) {
      await this.pause(wait);
      return true;
    }
    // Shared outbox: no POST that could outlast the lease (after it, another node may post this batch).
    if (this.d.shared && this.leaseUntil - this.d.now() < this.d.postMarginMs) throw new LeaseLost('lease ending before the POST could finish');
    const outcome = await this.d.post(this.ep, b.id, b.body, this.abort.signal, { kind: 'events', events: b.events });
    if (this.stopped && !outcome.ok) return false; // a POST cut short by stop is not a failure of the endpoint
    if (outcome.ok) {
      this.state = { ...this.state, cursor: b.lastSeq, batch: undefined, delivered: this.state.delivered + b.events };
      await this.save(true);
      return true;
    }
    await this.failed(b, outcome.error);
    return true;
  }

  private async failed(b: Batch, error: string): Promise<void> {
    const now = this.d.now();
    const cfg = this.d.o.config;
    b.attempts++;
    b.firstFailAt ??= now;
    b.lastError = error.slice(0, 300);
    this.state.failures++;
    this.d.failures.set(this.ep.account, (this.d.failures.get(this.ep.account) ?? 0) + 1);
    if (now - b.firstFailAt >= cfg.disableAfterHours * HOUR_MS) {
      const reason = `failing since ${new Date(b.firstFailAt).toISOString()} (${b.attempts} attempts; last: ${b.lastError})`;
      const disabled: State = { ...this.state, disabled: { at: new Date(now).toISOString(), reason } };
      if (this.d.shared) {
        // The row first (fenced), then the event in this node's log: a crash between loses the notice, never disables twice.
        this.state = disabled;
        await this.save(true);
        await this.d.o.events.commitWith([{ type: 'webhook.disabled', account: this.ep.account, reason: `webhook ${this.ep.id} (${this.ep.url}) disabled: ${reason}` }], (ops) => this.d.o.store.commit(ops, { sync: true }));
        this.d.o.log.warn({ event: 'webhook-disabled', account: this.ep.account, webhook: this.ep.id, url: this.ep.url, reason }, 'webhook endpoint disabled');
        return;
      }
      // The state and the event that reports it in one batch (the notifier mails the event).
      await this.d.o.events.commitWith([{ type: 'webhook.disabled', account: this.ep.account, reason: `webhook ${this.ep.id} (${this.ep.url}) disabled: ${reason}` }], (ops) =>
        this.d.o.store.commit([...ops, { type: 'put', key: stateKey(this.ep.account, this.ep.id), value: Buffer.from(JSON.stringify(disabled)) }], { sync: true }),
      );
      this.state = disabled;
      this.d.o.log.warn({ event: 'webhook-disabled', account: this.ep.account, webhook: this.ep.id, url: this.ep.url, reason }, 'webhook endpoint disabled');
      return;
    }
    const schedule = cfg.retrySeconds;
    b.nextAt = now + schedule[Math.min(b.attempts - 1, schedule.length - 1)]! * 1000;
    await this.save(false); // losing this only means one attempt sooner
    this.d.o.log.info({ event: 'webhook-failed', account: this.ep.account, webhook: this.ep.id, attempts: b.attempts, error: b.lastError, nextAttemptAt: new Date(b.nextAt).toISOString() }, 'webhook POST failed; will retry');
  }
}

export class WebhookDispatcher {
  private readonly workers = new Map<string, EndpointWorker>();
  private readonly agent: Agent;
  readonly now: () => number;
  /** Failed POSTs per account since start (Prometheus). */
  readonly failures = new Map<string, number>();

  readonly source: WebhookSource;
  /** The source's top when last read (list() is synchronous). */
  private lastTop = 0;
  /** Several nodes: the outbox rows are shared; absent: this node's LevelDB. */
  readonly shared: SharedOutbox | undefined;
  /** Loops posting another node's events (rows taken over), by row key account!id!origin. */
  private readonly adopted = new Map<string, EndpointWorker>();
  /** Shared outbox: how often leases are renewed and silent nodes' rows looked for (a sixth of the lease). */
  readonly tickMs: number;
  /** Shared outbox: a POST starts only with this much of the lease left (it must end before another node may post). */
  readonly postMarginMs: number;
  private ticker: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopping = false;
  readonly endpoints: WebhookEndpointStore;
  /** API adds and deletes, and another node's list, one at a time. */
  private readonly lock = new KeyedLock();
  /** Bumped by every add or delete here: a list read before one is not applied over it. */
  private generation = 0;

  constructor(readonly o: WebhookOptions) {
    this.now = o.now ?? Date.now;
    this.source = o.source ?? localWebhookSource(o.events);
    this.shared = this.source.outbox;
    this.endpoints = o.endpoints ?? new LevelWebhookEndpoints(o.store);
    const ms = o.config.timeoutSeconds * 1000;
    this.agent = new Agent({ connect: { timeout: ms }, headersTimeout: ms, bodyTimeout: ms });
    this.tickMs = this.shared ? Math.max(500, Math.floor(this.shared.leaseMs / 6)) : SOURCE_RETRY_MS;
    this.postMarginMs = this.shared ? Math.min(ms + 1000, this.shared.leaseMs / 2) : 0;
  }

  async start(): Promise<void> {
    const eps: Endpoint[] = [];
    for (const a of this.o.accounts) {
      for (const w of a.webhooks) {
        const secret = w.secret ?? this.o.env[w.secretEnv!];
        if (!secret) throw new PostinoError('BAD_REQUEST', `accounts.${a.id}.webhooks.${w.id}: environment variable ${w.secretEnv} is not set`);
        eps.push({ account: a.id, id: w.id, url: w.url, types: w.types, secret, source: 'config' });
      }
    }
    eps.push(...(await this.endpoints.load()));
    for (const ep of eps) await this.launch(ep);
    this.source.subscribe(() => {
      for (const w of this.workers.values()) w.wake();
    });
    this.endpoints.watch?.((all) => this.fromElsewhere(all));
    if (this.shared) {
      this.ticker = setInterval(() => void this.tick(), this.tickMs).unref();
      void this.tick();
    }
  }

  /**
   * Shared outbox, every tickMs: renews this node's leases (a loop whose row is gone stops posting),
   * hands rows back to their origin when it asks, and takes the rows of these endpoints whose
   * holder went silent for takeoverSeconds, posting their pending batch (same webhook-id) first.
   */
  private tick(): Promise<void> {
    if (this.ticking || this.stopping) return this.ticking ?? Promise.resolve();
    this.ticking = this.tickOnce()
      .catch((err: unknown) => this.o.log.debug({ err: { message: (err as Error).message } }, 'webhook outbox leases not renewed; retrying'))
      .finally(() => {
        this.ticking = undefined;
        // Another node's events come with no notice from this node's shipper: its loops look each tick.
        for (const w of this.adopted.values()) w.wake();
      });
    return this.ticking;
  }

  private async tickOnce(): Promise<void> {
    const shared = this.shared!;
    const t0 = this.now();
    const held = await shared.renew();
    const keys = new Set(held.map((r) => `${r.account}!${r.endpoint}!${r.origin}`));
    for (const w of [...this.workers.values(), ...this.adopted.values()]) {
      if (!w.holding) continue;
      if (keys.has(w.rowKey)) w.leaseUntil = t0 + shared.leaseMs;
      else w.lose();
    }
    for (const r of held) {
      if (r.origin === shared.node || this.stopping) continue;
      const key = `${r.account}!${r.endpoint}!${r.origin}`;
      if (r.reclaim) {
        // Its origin is back: this loop stops (a POST in flight is cut short) and the row goes back
        // with its pending batch, which the origin posts under the same webhook-id.
        await this.adopted.get(key)?.stop();
        this.adopted.delete(key);
        await shared.handBack(r.account, r.endpoint, r.origin);
        this.o.log.info({ event: 'webhook-handback', account: r.account, webhook: r.endpoint, origin: r.origin }, `webhook outbox of node ${r.origin} handed back to it`);
        continue;
      }
      // Held without a loop (it ended on an error): it gets one again.
      if (!this.adopted.has(key) && r.state && !r.state.disabled) this.adopt(r, r.state, t0);
    }
    if (this.stopping) return;
    for (const r of await shared.take([...this.workers.keys()])) {
      if (!r.state) continue;
      this.o.log.warn(
        { event: 'webhook-takeover', account: r.account, webhook: r.endpoint, origin: r.origin, cursor: r.state.cursor, pending: r.state.batch?.id ?? null },
        `node ${r.origin} silent for ${shared.leaseMs / 1000} s: this node posts its webhook events now (its pending batch first, under the same webhook-id)`,
      );
      this.adopt(r, r.state, t0);
    }
  }

  /** Starts a loop posting another node's events from a row this node holds. */
  private adopt(r: OutboxRow, state: State, leaseFrom: number): void {
    const own = this.workers.get(`${r.account}!${r.endpoint}`);
    if (!own) return; // an endpoint this node does not know (an API endpoint kept by another node)
    const key = `${r.account}!${r.endpoint}!${r.origin}`;
    const w = new EndpointWorker(own.ep, this, r.origin);
    w.state = state;
    w.holding = true;
    w.leaseUntil = leaseFrom + this.shared!.leaseMs;
    this.adopted.set(key, w);
    w.start();
    void w.done.then(() => {
      if (this.adopted.get(key) === w) this.adopted.delete(key);
    });
  }

  /** The API endpoints as another node left them (a shared store's poll): new ones start, removed ones stop. */
  private fromElsewhere(all: Endpoint[]): void {
    const seen = this.generation;
    void this.lock
      .run('endpoints', async () => {
        if (seen !== this.generation) return; // an add or delete here meanwhile: the next poll brings both
        const wanted = new Map(all.map((e) => [`${e.account}!${e.id}`, e]));
        for (const [key, w] of [...this.workers]) {
          if (w.ep.source !== 'api' || wanted.has(key)) continue;
          await this.drop(w);
          this.o.log.info({ event: 'webhook-removed-elsewhere', account: w.ep.account, webhook: w.ep.id }, 'webhook endpoint removed on another node');
        }
        for (const [key, ep] of wanted) {
          if (this.workers.has(key)) continue;
          await this.launch(ep);
          this.o.log.info({ event: 'webhook-added-elsewhere', account: ep.account, webhook: ep.id, url: ep.url }, 'webhook endpoint added on another node');
        }
      })
      .catch((err: unknown) => this.o.log.error({ err }, 'webhook endpoints from another node not applied'));
  }

  /** Stops an endpoint's loop and forgets this node's state for it (outbox, cursor, deliveries). */
  private async drop(w: EndpointWorker): Promise<void> {
    await w.stop();
    this.workers.delete(`${w.ep.account}!${w.ep.id}`);
    // Loops posting other nodes' events to it (rows taken over) stop too, and its shared outbox rows go.
    for (const [key, a] of this.adopted) {
      if (a.ep.account !== w.ep.account || a.ep.id !== w.ep.id) continue;
      await a.stop();
      this.adopted.delete(key);
    }
    await this.shared?.remove(w.ep.account, w.ep.id);
    await this.o.store.commit([{ type: 'del', key: endpointKey(w.ep.account, w.ep.id) }, { type: 'del', key: stateKey(w.ep.account, w.ep.id) }, { type: 'del', key: recentKey(w.ep.account, w.ep.id) }], { sync: true });
  }

  /** The source's top (remembered for list()). */
  async top(): Promise<number> {
    this.lastTop = await this.source.top();
    return this.lastTop;
  }

  private async launch(ep: Endpoint): Promise<void> {
    const w = new EndpointWorker(ep, this);
    await w.load(await this.top().catch(() => undefined));
    this.workers.set(`${ep.account}!${ep.id}`, w);
    w.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.ticker) clearInterval(this.ticker);
    await this.ticking;
    await this.endpoints.close();
    await this.lock.run('endpoints', async () => undefined); // a list being applied has finished
    await Promise.all([...this.workers.values(), ...this.adopted.values()].map((w) => w.stop()));
    await this.agent.close();
  }

  /** One signed POST; ok on a 2xx. With `record`, its outcome joins the endpoint's last deliveries. */
  async post(ep: Endpoint, id: string, body: string, signal?: AbortSignal, record?: { kind: DeliveryRecord['kind']; events: number }): Promise<{ ok: boolean; status?: number; error: string }> {
    const started = this.now();
    const t0 = process.hrtime.bigint();
    const r = await this.send(ep, id, body, signal);
    // A POST cut short by stop() says nothing about the endpoint.
    if (record && !signal?.aborted) {
      const ms = Math.round(Number(process.hrtime.bigint() - t0) / 1e6);
      await this.record(ep, { at: new Date(started).toISOString(), kind: record.kind, webhookId: id, events: record.events, status: r.status ?? null, ms, ok: r.ok, error: r.ok ? null : r.error.slice(0, 300) });
    }
    return r;
  }

  private async record(ep: Endpoint, d: DeliveryRecord): Promise<void> {
    const w = this.workers.get(`${ep.account}!${ep.id}`);
    if (!w) return; // removed meanwhile
    w.recent = [d, ...w.recent].slice(0, RECENT_DELIVERIES);
    await this.o.store.commit([{ type: 'put', key: recentKey(ep.account, ep.id), value: Buffer.from(JSON.stringify(w.recent)) }], { sync: false }).catch((err: unknown) => this.o.log.warn({ err, account: ep.account, webhook: ep.id }, 'could not record a webhook delivery'));
  }

  private async send(ep: Endpoint, id: string, body: string, signal?: AbortSignal): Promise<{ ok: boolean; status?: number; error: string }> {
    const ts = Math.floor(this.now() / 1000);
    try {
      const res = await request(ep.url, {
        method: 'POST',
        dispatcher: this.agent,
        signal,
        headers: { 'content-type': 'application/json', 'user-agent': 'Postino-Webhooks/1', ...signatureHeaders(ep.secret, id, ts, body) },
        body,
      });
      let read = 0;
      for await (const chunk of res.body) {
        read += (chunk as Buffer).length;
        if (read > MAX_REPLY_BYTES) break;
      }
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return { ok, status: res.statusCode, error: ok ? '' : `HTTP ${res.statusCode}` };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message || err.name : String(err) };
    }
  }

  private worker(account: string | undefined, id: string): EndpointWorker {
    const matches = [...this.workers.values()].filter((w) => w.ep.id === id && (account === undefined || w.ep.account === account));
    if (matches.length === 0) throw new PostinoError('NOT_FOUND', `no webhook "${id}"${account ? ` in account "${account}"` : ''}`);
    if (matches.length > 1) throw new PostinoError('BAD_REQUEST', `webhook "${id}" exists in several accounts: name the account`);
    return matches[0]!;
  }

  list(account: string | undefined): EndpointView[] {
    const top = this.o.source ? this.lastTop : this.o.events.watermark;
    return [...this.workers.values()]
      .filter((w) => account === undefined || w.ep.account === account)
      .map(({ ep, state: s }) => ({
        account: ep.account,
        id: ep.id,
        url: ep.url,
        types: ep.types,
        source: ep.source,
        cursor: Math.max(0, s.cursor),
        lag: s.cursor < 0 ? 0 : Math.max(0, top - s.cursor),
        pending: s.batch
          ? {
              id: s.batch.id,
              events: s.batch.events,
              attempts: s.batch.attempts,
              failingSince: s.batch.firstFailAt ? new Date(s.batch.firstFailAt).toISOString() : null,
              nextAttemptAt: s.batch.nextAt ? new Date(s.batch.nextAt).toISOString() : null,
              lastError: s.batch.lastError ?? null,
            }
          : null,
        disabled: s.disabled ?? null,
        failures: s.failures,
        delivered: s.delivered,
      }));
  }

  /** A new endpoint from the API; the answer holds its secret (the only time it is shown). */
  async add(account: string, url: string, types: string[]): Promise<{ id: string; secret: string }> {
    const id = `wh_${newWebhookMessageId().slice(4, 16).toLowerCase().replace(/[^a-z0-9]/g, '0')}`;
    const ep: Endpoint = { account, id, url, types, secret: newWebhookSecret(), source: 'api', createdAt: new Date(this.now()).toISOString() };
    return this.lock.run('endpoints', async () => {
      await this.endpoints.add(ep); // 503 when it cannot be kept: nothing started
      this.generation++;
      await this.launch(ep);
      return { id, secret: ep.secret };
    });
  }

  async remove(account: string | undefined, id: string): Promise<void> {
    await this.lock.run('endpoints', async () => {
      const w = this.worker(account, id);
      if (w.ep.source === 'config') throw new PostinoError('BAD_REQUEST', `webhook "${id}" is in the config file: remove it there`);
      await this.endpoints.remove(w.ep.account, id); // 503 when it cannot be kept: the endpoint stays
      this.generation++;
      await this.drop(w);
    });
  }

  /** A signed test POST outside the outbox; the receiver's status is returned. */
  async test(account: string | undefined, id: string): Promise<{ ok: boolean; status: number | null; error: string | null }> {
    const { ep } = this.worker(account, id);
    const body = JSON.stringify({ type: 'postino.test', timestamp: new Date(this.now()).toISOString(), data: { account: ep.account, webhook: ep.id } });
    const r = await this.post(ep, newWebhookMessageId(), body, undefined, { kind: 'test', events: 0 });
    return { ok: r.ok, status: r.status ?? null, error: r.ok ? null : r.error };
  }

  /** An endpoint's last deliveries (batches and tests), newest first. */
  deliveries(account: string | undefined, id: string): DeliveryRecord[] {
    return this.worker(account, id).recent;
  }

  /** Takes a disabled endpoint back into service; its pending batch is retried at once. */
  async enable(account: string | undefined, id: string): Promise<void> {
    const w = this.worker(account, id);
    if (!w.state.disabled) return;
    await w.stop();
    const state: State = { ...w.state, disabled: undefined, batch: w.state.batch && { ...w.state.batch, firstFailAt: undefined, nextAt: undefined } };
    if (this.shared) {
      if (!(await this.shared.save(w.ep.account, id, this.shared.node, state))) throw new PostinoError('SHARED_STATE_UNAVAILABLE', `webhook "${id}": its outbox is held by another node at the moment; try again in ${Math.ceil(this.tickMs / 500)} s`);
      await this.launch(w.ep);
      return;
    }
    await this.o.store.commit([{ type: 'put', key: stateKey(w.ep.account, id), value: Buffer.from(JSON.stringify(state)) }], { sync: true });
    await this.launch(w.ep);
  }
}
